"""A validated parse of a safetensors header (the documented 8-byte length + JSON).

We parse the header ourselves, with every rule the safetensors library enforces
(a test cross-checks against it), because pttui needs each tensor's byte range to
export without loading, and must explain exactly what is wrong with a bad file.
"""

from __future__ import annotations

import json
import struct

from pttui.core import dtypes
from pttui.core.meta import Container, ReadError, StorageRef, TensorMeta

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAX_HEADER = 100_000_000  # the limit the safetensors library applies


def looks_like(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def read_header(f: BinaryIO, size: int, label: str) -> tuple[dict, int]:
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise ReadError(f"{label}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        raise ReadError(f"{label}: the safetensors header claims {n:,} bytes (limit "
                        f"{MAX_HEADER:,}); the file is damaged or hostile")
    if 8 + n > size:
        raise ReadError(f"{label}: the safetensors header runs past the end of the file "
                        "(truncated)")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ReadError(f"{label}: the safetensors header nests too deeply; the file is "
                        "damaged or hostile") from None
    except ValueError as err:  # bad UTF-8, bad JSON, NaN, a 5,000-digit number
        raise ReadError(f"{label}: the safetensors header is not valid JSON "
                        f"({str(err)[:120]}); the file is damaged") from None
    if not isinstance(header, dict):
        raise ReadError(f"{label}: the safetensors header is not a JSON object")
    return header, 8 + n


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN; safetensors does not


def read(f: BinaryIO, size: int, label: str, shard: str | None = None
         ) -> tuple[Container, dict[str, str]]:
    header, data_start = read_header(f, size, label)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ReadError(f"{label}: safetensors __metadata__ must map strings to strings")
    tensors: dict[str, TensorMeta] = {}
    spans: list[tuple[int, int, str]] = []
    for key, info in header.items():
        t, begin, end = _tensor(key, info, label, shard)
        tensors[key] = t
        spans.append((begin, end, key))
    spans.sort()
    pos = 0
    for begin, end, key in spans:
        if begin != pos:
            what = "overlaps another tensor" if begin < pos else "leaves a gap before it"
            raise ReadError(f"{label}: tensor {_name(key)} {what} in the data section; "
                            "the file is damaged")
        pos = end
    if data_start + pos != size:
        short = data_start + pos > size
        raise ReadError(f"{label}: the file is {'shorter' if short else 'longer'} than its "
                        f"header says ({size:,} bytes, expected {data_start + pos:,})"
                        + ("; it is truncated" if short else ""))
    return Container((), tensors), meta


def _tensor(key: str, info: Any, label: str, shard: str | None) -> tuple[TensorMeta, int, int]:
    if not isinstance(info, dict):
        raise ReadError(f"{label}: header entry {_name(key)} is not an object")
    tag = info.get("dtype")
    dt = dtypes.SAFETENSORS_DTYPES.get(tag) if isinstance(tag, str) else None
    shape = info.get("shape")
    offs = info.get("data_offsets")
    if dt is None:
        raise ReadError(f"{label}: tensor {_name(key)} has unknown dtype {_brief(tag)}")
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 1 << 64
                                            for d in shape)):
        raise ReadError(f"{label}: tensor {_name(key)} has an invalid shape {_brief(shape)}")
    if not (isinstance(offs, list) and len(offs) == 2 and all(
            type(o) is int and 0 <= o < 1 << 64 for o in offs) and offs[0] <= offs[1]):
        raise ReadError(f"{label}: tensor {_name(key)} has invalid data_offsets "
                        f"{_brief(offs)}")
    numel = 1
    for d in shape:
        numel *= d
        if numel > 1 << 62:
            raise ReadError(f"{label}: tensor {_name(key)} has an impossibly large shape")
    nbytes = (numel * dtypes.itemsize_bits(dt) + 7) // 8
    if offs[1] - offs[0] != nbytes:
        raise ReadError(f"{label}: tensor {_name(key)} spans {offs[1] - offs[0]:,} bytes but its "
                        f"shape and dtype need {nbytes:,}")
    ref = StorageRef(key, dt, numel, "cpu", shard)
    return TensorMeta(key, tuple(shape), dt, "cpu", ref, 0, None), offs[0], offs[1]


def _name(key: str, limit: int = 80) -> str:
    text = key if key.isprintable() else repr(key)[1:-1]
    return text if len(text) <= limit else text[:limit] + "…"


def _brief(value: Any) -> str:
    """A header value for a message: short, one line."""
    text = json.dumps(value, ensure_ascii=True) if value is not None else "none"
    return text if len(text) <= 80 else text[:80] + "…"
