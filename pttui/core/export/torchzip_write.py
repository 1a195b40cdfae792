"""Write the torch.save zip format without torch: the pickle and the archive layout.

Used when an export only copies stored bytes: importing torch alone costs seconds
and hundreds of MiB, and torch.save pushes every byte through Python. The pickle
is the one torch.save writes for a state_dict of CPU tensors (protocol 2, an
``OrderedDict`` of ``torch._utils._rebuild_tensor_v2`` calls whose storages are
persistent ids), so ``torch.load(weights_only=True)`` reads it as its own; the
archive has torch's records, each record's data 64-byte aligned (``mmap=True``
needs that), zip64 where sizes or offsets pass 4 GiB.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pttui.core.base.dtypes import STORAGE_DTYPES

# dtype -> the storage class torch.save names for it (only the classic ones)
STORAGE_CLASS = {dt: name for name, dt in STORAGE_DTYPES.items()
                 if name != "UntypedStorage" and not name.startswith("Q")}
ARCHIVE = "archive"  # the prefix torch.save uses when it writes to a file object
ALIGN = 64
_MAX32 = 0xFFFFFFFF
_BATCH = 1000  # items per SETITEMS, as pickle does


class TensorRef:
    """One tensor of the pickle: its storage record and its view of it."""

    __slots__ = ("name", "record", "dtype", "numel", "offset", "shape", "stride")

    def __init__(self, name: str, record: str, dtype: str, numel: int, offset: int,
                 shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.name, self.record, self.dtype, self.numel = name, record, dtype, numel
        self.offset, self.shape, self.stride = offset, shape, stride


class _Pickle:
    """The handful of protocol-2 opcodes a state_dict needs, with a small memo."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self.memo: dict[Any, int] = {}

    def _put(self, key: Any) -> None:
        i = self.memo[key] = len(self.memo)
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)

    def _get(self, key: Any) -> bool:
        i = self.memo.get(key)
        if i is None:
            return False
        self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)
        return True

    def glob(self, module: str, name: str) -> None:
        if not self._get(("g", module, name)):
            self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            self._put(("g", module, name))

    def const(self, s: str) -> None:
        """A string used again and again ('storage', 'cpu'): memoized."""
        if not self._get(("s", s)):
            self.string(s)
            self._put(("s", s))

    def string(self, s: str) -> None:
        b = s.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(b)) + b

    def integer(self, n: int) -> None:
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)
        elif -(1 << 31) <= n < (1 << 31):
            self.out += b"J" + struct.pack("<i", n)
        else:  # LONG1, encoded as pickle.encode_long does
            nbytes = (n.bit_length() >> 3) + 1
            enc = n.to_bytes(nbytes, "little", signed=True)
            if n < 0 and nbytes > 1 and enc[-1] == 0xFF and enc[-2] & 0x80:
                enc = enc[:-1]
            self.out += b"\x8a" + bytes([len(enc)]) + enc

    def int_tuple(self, values: tuple[int, ...]) -> None:
        if not values:
            self.out += b")"
            return
        if len(values) > 3:
            self.out += b"("
        for v in values:
            self.integer(v)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(values), b"t")

    def value(self, v: Any) -> None:
        """A plain value (what ``export._plain`` returns): OrderedDict at the top."""
        t = type(v)
        if v is None:
            self.out += b"N"
        elif t is bool:
            self.out += b"\x88" if v else b"\x89"
        elif t is int:
            self.integer(v)
        elif t is float:
            self.out += b"G" + struct.pack(">d", v)
        elif t is str:
            self.string(v)
        elif t is tuple:
            if not v:
                self.out += b")"
                return
            self.out += b"("
            for x in v:
                self.value(x)
            self.out += b"t"
        elif t is list:
            self.out += b"]"
            self._items(v, b"e", lambda x: self.value(x))
        elif isinstance(v, dict):
            if t is dict:
                self.out += b"}"
            else:
                self.glob("collections", "OrderedDict")
                self.out += b")R"
            self._items(list(v.items()), b"u", self._pair)
        else:
            raise TypeError(f"cannot pickle {t.__name__} without torch")

    def _pair(self, kv: tuple[Any, Any]) -> None:
        self.value(kv[0])
        self.value(kv[1])

    def _items(self, items: list, op: bytes, emit) -> None:
        for i in range(0, len(items), _BATCH):
            self.out += b"("
            for item in items[i:i + _BATCH]:
                emit(item)
            self.out += op

    def tensor(self, t: TensorRef) -> None:
        """``_rebuild_tensor_v2((storage pid), offset, shape, stride, False, OrderedDict())``."""
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("
        self.const("storage")
        self.glob("torch", STORAGE_CLASS[t.dtype])
        self.string(t.record)
        self.const("cpu")
        self.integer(t.numel)
        self.out += b"tQ"
        self.integer(t.offset)
        self.int_tuple(t.shape)
        self.int_tuple(t.stride)
        self.out += b"\x89"
        self.glob("collections", "OrderedDict")
        self.out += b")RtR"


def state_dict_pickle(tensors: list[TensorRef], metadata: Any = None) -> bytes:
    """data.pkl for an OrderedDict of ``tensors`` (and its ``_metadata``, if given)."""
    p = _Pickle()
    p.glob("collections", "OrderedDict")
    p.out += b")R"
    for i in range(0, len(tensors), _BATCH):
        p.out += b"("
        for t in tensors[i:i + _BATCH]:
            p.string(t.name)
            p.tensor(t)
        p.out += b"u"
    if metadata is not None:
        p.out += b"}"
        p.string("_metadata")
        p.value(metadata)
        p.out += b"sb"
    p.out += b"."
    return bytes(p.out)


# -- the archive ------------------------------------------------------------------------

@dataclass
class Record:
    name: str
    header_offset: int
    data_offset: int
    size: int
    crc: int = 0


class ZipWriter:
    """Stored records written at explicit offsets of ``fd`` (no Python buffering), so
    record data can also be placed by ``os.copy_file_range``."""

    def __init__(self, fd: int, force_zip64: bool = False) -> None:
        self.fd, self.pos, self.records = fd, 0, []
        self.force_zip64 = force_zip64

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]

    def begin(self, name: str, size: int, crc: int = 0) -> Record:
        """Write a local header; the caller then puts ``size`` bytes at ``data_offset``."""
        name_b = (f"{ARCHIVE}/{name}").encode("utf-8")
        big = self.force_zip64 or size >= _MAX32
        z64 = struct.pack("<2H2Q", 0x0001, 16, size, size) if big else b""
        base = self.pos + 30 + len(name_b) + len(z64) + 4
        pad = (-base) % ALIGN
        extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        stored = _MAX32 if big else size
        head = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45 if big else 20, 0x0800, 0, 0, 0x21,
                           crc, stored, stored, len(name_b), len(extra))
        rec = Record(f"{ARCHIVE}/{name}", self.pos, self.pos + len(head) + len(name_b)
                     + len(extra), size, crc)
        self._write(head + name_b + extra)
        self.records.append(rec)
        self.pos = rec.data_offset + size
        return rec

    def small(self, name: str, data: bytes) -> Record:
        rec = self.begin(name, len(data), zlib.crc32(data))
        self.pos = rec.data_offset
        self._write(data)
        return rec

    def set_crc(self, rec: Record, crc: int) -> None:
        rec.crc = crc
        os.pwrite(self.fd, struct.pack("<L", crc), rec.header_offset + 14)

    def finish(self) -> None:
        """The central directory and its end records (zip64 ones when needed)."""
        start, out = self.pos, bytearray()
        for r in self.records:
            name_b = r.name.encode("utf-8")
            vals = [v for v in (r.size, r.size) if self.force_zip64 or v >= _MAX32]
            if self.force_zip64 or r.header_offset >= _MAX32:
                vals.append(r.header_offset)
            extra = struct.pack(f"<2H{len(vals)}Q", 0x0001, 8 * len(vals), *vals) if vals else b""
            big = bool(vals)
            size = _MAX32 if self.force_zip64 or r.size >= _MAX32 else r.size
            lho = _MAX32 if self.force_zip64 or r.header_offset >= _MAX32 else r.header_offset
            out += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45 if big else 20,
                               45 if big else 20, 0x0800, 0, 0, 0x21, r.crc, size, size,
                               len(name_b), len(extra), 0, 0, 0, 0, lho)
            out += name_b + extra
        self._write(bytes(out))
        n, cd_size, end = len(self.records), len(out), self.pos
        if self.force_zip64 or n >= 0xFFFF or start >= _MAX32 or cd_size >= _MAX32:
            self._write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n,
                                    cd_size, start))
            self._write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1))
            self._write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF,
                                    _MAX32, _MAX32, 0))
        else:
            self._write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, cd_size, start, 0))
        os.ftruncate(self.fd, self.pos)


def serialization_id() -> str:
    """What torch writes to ``.data/serialization_id``: 40 random decimal digits."""
    return "".join(str(secrets.randbelow(10)) for _ in range(40))


def head_records(w: ZipWriter, data_pkl: bytes) -> None:
    """The records torch.save writes before the storages."""
    w.small("data.pkl", data_pkl)
    w.small(".format_version", b"1")
    w.small(".storage_alignment", str(ALIGN).encode())
    w.small("byteorder", b"little")


def tail_records(w: ZipWriter) -> None:
    w.small("version", b"3\n")
    w.small(".data/serialization_id", serialization_id().encode())


def contiguous_stride(shape: Iterable[int]) -> tuple[int, ...]:
    stride, acc = [], 1
    for d in reversed(tuple(shape)):
        stride.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(stride))
