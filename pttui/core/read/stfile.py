"""A validated parse of a safetensors header (the documented 8-byte length + JSON).

We parse the header ourselves, with every rule the safetensors library enforces
(a test cross-checks against it), because pttui needs each tensor's byte range to
export without loading, and must explain exactly what is wrong with a bad file.
"""

from __future__ import annotations

import json
import struct

from pttui.core.base import dtypes
from pttui.core.base.meta import Container, ReadError, StorageRef, TensorMeta

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAX_HEADER = 100_000_000  # the limit the safetensors library applies
_BUGGY = "the file is damaged or was written by a buggy tool: re-export it"
_COPY = "copy or download it again"


def looks_like(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def read_header(f: BinaryIO, size: int, label: str) -> tuple[dict, int]:
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise ReadError(f"{label}: too short to be a safetensors file; {_COPY}")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        raise ReadError(f"{label}: the safetensors header claims {n:,} bytes (limit "
                        f"{MAX_HEADER:,}); the file is damaged or hostile: refusing to read it")
    if 8 + n > size:
        raise ReadError(f"{label}: the safetensors header runs past the end of the file "
                        f"(truncated); {_COPY}")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ReadError(f"{label}: the safetensors header nests too deeply; the file is "
                        "damaged or hostile: refusing to read it") from None
    except ValueError as err:  # bad UTF-8, bad JSON, NaN, a 5,000-digit number
        raise ReadError(f"{label}: the safetensors header is not valid JSON "
                        f"({str(err)[:120]}); {_BUGGY}") from None
    if not isinstance(header, dict):
        raise ReadError(f"{label}: the safetensors header is not a JSON object; {_BUGGY}")
    return header, 8 + n


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN; safetensors does not


def read(f: BinaryIO, size: int, label: str, shard: str | None = None
         ) -> tuple[Container, dict[str, str]]:
    header, data_start = read_header(f, size, label)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ReadError(f"{label}: safetensors __metadata__ must map strings to strings; "
                        f"{_BUGGY}")
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
                            f"{_BUGGY}")
        pos = end
    if data_start + pos != size:
        short = data_start + pos > size
        raise ReadError(f"{label}: the file is {'shorter' if short else 'longer'} than its "
                        f"header says ({size:,} bytes, expected {data_start + pos:,})"
                        + (f"; it is truncated: {_COPY}" if short else f"; {_BUGGY}"))
    return Container((), tensors), meta


ALIASES_KEY = "pttui.aliases"  # {"alias": "stored name"}: tied weights pttui stored once


def aliases_of(meta: dict[str, str]) -> dict[str, str] | None:
    """``pttui.aliases`` of a safetensors ``__metadata__`` (alias -> stored name): {} when
    there is none, None when it is not a JSON object of names."""
    raw = meta.get(ALIASES_KEY)
    if raw is None:
        return {}
    try:
        aliases = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        return None
    return aliases


def restore_aliases(container: Container, meta: dict[str, str]) -> list[str]:
    """Put back the tied names pttui's export stored once (``pttui.aliases`` in
    ``__metadata__``): each alias becomes a tensor sharing its twin's storage, right after
    the twin. Returns notes (what was restored, what was not and why)."""
    if ALIASES_KEY not in meta:
        return []
    aliases = aliases_of(meta)
    if aliases is None:
        return [f"problem: __metadata__ {ALIASES_KEY} is not a JSON object of names; the tied "
                "names it should list were not restored"]
    tensors = container.tensors
    by_twin: dict[str, list[str]] = {}
    skipped: list[str] = []
    for alias, twin in aliases.items():
        if alias in tensors or alias == "__metadata__":
            skipped.append(f"{_name(alias)} (already a stored tensor)")
        elif twin not in tensors:
            skipped.append(f"{_name(alias)} (its twin {_name(twin)} is not in the file)")
        else:
            by_twin.setdefault(twin, []).append(alias)
    restored = 0
    if by_twin:
        out: dict[str, TensorMeta] = {}
        for key, t in tensors.items():
            out[key] = t
            for alias in by_twin.get(key, ()):
                out[alias] = t.renamed(alias)
                restored += 1
        container.tensors = out
    notes = []
    if restored:
        first = next(iter(by_twin.items()))
        notes.append(f"{restored} tied name{'s' if restored > 1 else ''} restored from "
                     f"{ALIASES_KEY} (stored once: {_name(first[1][0])} = {_name(first[0])}"
                     + (", ..." if restored > 1 else "") + ")")
    if skipped:
        notes.append(f"problem: {len(skipped)} name(s) in {ALIASES_KEY} were not restored: "
                     f"{skipped[0]}" + (f" and {len(skipped) - 1} more" if len(skipped) > 1
                                        else ""))
    return notes


def _tensor(key: str, info: Any, label: str, shard: str | None) -> tuple[TensorMeta, int, int]:
    if not isinstance(info, dict):
        raise ReadError(f"{label}: header entry {_name(key)} is not an object; {_BUGGY}")
    tag = info.get("dtype")
    dt = dtypes.SAFETENSORS_DTYPES.get(tag) if isinstance(tag, str) else None
    shape = info.get("shape")
    offs = info.get("data_offsets")
    if dt is None:
        raise ReadError(f"{label}: tensor {_name(key)} has unknown dtype {_brief(tag)}; "
                        "a newer safetensors writer or a buggy tool made it: re-export it")
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 1 << 64
                                            for d in shape)):
        raise ReadError(f"{label}: tensor {_name(key)} has an invalid shape {_brief(shape)}; "
                        f"{_BUGGY}")
    if not (isinstance(offs, list) and len(offs) == 2 and all(
            type(o) is int and 0 <= o < 1 << 64 for o in offs) and offs[0] <= offs[1]):
        raise ReadError(f"{label}: tensor {_name(key)} has invalid data_offsets "
                        f"{_brief(offs)}; {_BUGGY}")
    numel = 1
    for d in shape:
        numel *= d
        if numel > 1 << 62:
            raise ReadError(f"{label}: tensor {_name(key)} has an impossibly large shape; "
                            f"{_BUGGY}")
    nbytes = (numel * dtypes.itemsize_bits(dt) + 7) // 8
    if offs[1] - offs[0] != nbytes:
        raise ReadError(f"{label}: tensor {_name(key)} spans {offs[1] - offs[0]:,} bytes but its "
                        f"shape and dtype need {nbytes:,}; {_BUGGY}")
    ref = StorageRef(key, dt, numel, "cpu", shard)
    return TensorMeta(key, tuple(shape), dt, "cpu", ref, 0, None), offs[0], offs[1]


def _name(key: str, limit: int = 80) -> str:
    text = key if key.isprintable() else repr(key)[1:-1]
    return text if len(text) <= limit else text[:limit] + "…"


def _brief(value: Any) -> str:
    """A header value for a message: short, one line."""
    text = json.dumps(value, ensure_ascii=True) if value is not None else "none"
    return text if len(text) <= 80 else text[:80] + "…"
