"""Byte-level builders for hostile files: a zip writer and a pickle assembler.

Python's ``zipfile`` and ``pickle`` refuse to write most of what an attacker
writes (duplicate names, headers that disagree, a GLOBAL naming ``os.system``
without importing it), so the corpus is assembled here byte by byte. Everything
is deterministic: fixed timestamps, no random ids.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from dataclasses import dataclass

# -- zip ---------------------------------------------------------------------------------


@dataclass
class Rec:
    """One zip record. The ``local_*`` / ``cd_*`` overrides make the two headers disagree."""

    name: str
    data: bytes
    method: int = 0  # 0 stored, 8 deflated
    flags: int = 0  # bit 0: encrypted
    local_name: str | None = None
    cd_size: int | None = None
    zip64: bool = False  # sizes and offset through the zip64 extra field
    pad: int = 0  # bytes of extra field in the local header (torch aligns records)


def zip_bytes(records: list[Rec], *, zip64_eocd: bool = False, comment: bytes = b"",
              prefix: bytes = b"", cd_offset_delta: int = 0) -> bytes:
    """A zip archive of ``records`` in order, after ``prefix`` (for polyglots)."""
    out = bytearray(prefix)
    central = bytearray()
    for r in records:
        payload = zlib.compress(r.data)[2:-4] if r.method == 8 else r.data
        crc = zlib.crc32(r.data)
        off = len(out)
        lname = (r.local_name if r.local_name is not None else r.name).encode()
        extra = b"\0" * r.pad and struct.pack("<HH", 0xCAFE, r.pad - 4) + b"\0" * (r.pad - 4)
        size_l, csize_l = len(r.data), len(payload)
        if r.zip64:
            extra = struct.pack("<HHQQ", 1, 16, size_l, csize_l) + extra
            size_l = csize_l = 0xFFFFFFFF
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 45 if r.zip64 else 20, r.flags,
                           r.method, 0, 0x21, crc, csize_l, size_l, len(lname), len(extra))
        out += lname + extra + payload
        name = r.name.encode()
        usize = r.cd_size if r.cd_size is not None else len(r.data)
        csize = r.cd_size if r.cd_size is not None else len(payload)
        cextra = b""
        lho = off
        if r.zip64:
            cextra = struct.pack("<HHQQQ", 1, 24, usize, csize, off)
            usize = csize = lho = 0xFFFFFFFF
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45 if r.zip64 else 20,
                               r.flags, r.method, 0, 0x21, crc, csize, usize, len(name),
                               len(cextra), 0, 0, 0, 0, lho)
        central += name + cextra
    cd_off = len(out)
    out += central
    n = len(records)
    if zip64_eocd:
        eocd64 = len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n,
                           len(central), cd_off + cd_offset_delta)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd64, 1)
        out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                           0xFFFFFFFF, len(comment))
    else:
        out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central),
                           cd_off + cd_offset_delta, len(comment))
    return bytes(out + comment)


def torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None, *,
              archive: str = "archive", extra: list[Rec] | None = None,
              version: bytes | None = b"3\n") -> list[Rec]:
    """The records torch.save writes, in its order (data.pkl first, version last)."""
    recs = [Rec(f"{archive}/data.pkl", data_pkl), Rec(f"{archive}/byteorder", b"little")]
    recs += [Rec(f"{archive}/data/{k}", v) for k, v in (storages or {}).items()]
    recs += extra or []
    if version is not None:
        recs.append(Rec(f"{archive}/version", version))
    return recs


# -- pickle ------------------------------------------------------------------------------


class P:
    """A tiny pickle assembler: each method appends opcodes; ``bytes()`` adds STOP."""

    def __init__(self, proto: int = 2) -> None:
        self.b = bytearray(b"\x80" + bytes([proto]))

    def raw(self, data: bytes) -> P:
        self.b += data
        return self

    def str(self, s: str) -> P:
        e = s.encode("utf-8", "surrogatepass")
        self.b += b"X" + struct.pack("<I", len(e)) + e
        return self

    def int(self, v: int) -> P:
        if 0 <= v < 1 << 31:
            self.b += b"J" + struct.pack("<i", v)
        else:
            body = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.b += (b"\x8a" + bytes([len(body)]) if len(body) < 256
                       else b"\x8b" + struct.pack("<i", len(body))) + body
        return self

    def glob(self, module: str, name: str) -> P:
        self.b += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def mark(self) -> P:
        self.b += b"("
        return self

    def tuple(self) -> P:
        self.b += b"t"
        return self

    def reduce(self) -> P:
        self.b += b"R"
        return self

    def put(self, i: int) -> P:
        self.b += b"r" + struct.pack("<I", i)
        return self

    def get(self, i: int) -> P:
        self.b += b"j" + struct.pack("<I", i)
        return self

    def dict(self) -> P:
        self.b += b"}"
        return self

    def setitems(self) -> P:
        self.b += b"u"
        return self

    def persid(self) -> P:
        self.b += b"Q"
        return self

    def call(self, module: str, name: str, *args) -> P:
        """``module.name(*args)`` via GLOBAL + REDUCE; args are str/int/bytes or callables
        that emit themselves."""
        self.glob(module, name).mark()
        for a in args:
            self.value(a)
        return self.tuple().reduce()

    def value(self, a) -> P:
        if callable(a):
            a(self)
        elif isinstance(a, bool):
            self.b += b"\x88" if a else b"\x89"
        elif isinstance(a, int):
            self.int(a)
        elif isinstance(a, str):
            self.str(a)
        elif isinstance(a, bytes):
            self.b += b"C" + bytes([len(a)]) + a if len(a) < 256 else (
                b"B" + struct.pack("<I", len(a)) + a)
        elif isinstance(a, tuple):
            self.mark()
            for x in a:
                self.value(x)
            self.tuple()
        elif a is None:
            self.b += b"N"
        else:
            raise TypeError(type(a))
        return self

    def bytes(self) -> bytes:
        return bytes(self.b + b".")


def storage(key: str, numel: int, location: str = "cpu", stype: str = "FloatStorage",
            legacy: bool = False):
    """Emits torch's persistent id ``('storage', torch.FloatStorage, key, location, numel)``;
    the legacy stream adds a sixth item, the view (None)."""
    def emit(p: P) -> None:
        p.mark().str("storage").glob("torch", stype).str(key).str(location).int(numel)
        if legacy:
            p.raw(b"N")
        p.tuple().persid()
    return emit


def tensor(st, offset: int, shape: tuple, stride: tuple):
    """Emits ``torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, {})``."""
    def emit(p: P) -> None:
        p.glob("torch._utils", "_rebuild_tensor_v2").mark()
        st(p)
        p.value(offset).value(tuple(shape)).value(tuple(stride)).value(False)
        p.glob("collections", "OrderedDict").raw(b")").reduce()
        p.tuple().reduce()
    return emit


def state_dict(entries: dict, proto: int = 2) -> bytes:
    """A pickled dict of ``name -> emitter or plain value``."""
    p = P(proto).dict().mark()
    for k, v in entries.items():
        p.str(k).value(v)
    return p.setitems().bytes()


def contiguous(shape: tuple) -> tuple:
    stride, acc = [], 1
    for d in reversed(shape):
        stride.append(acc)
        acc *= d
    return tuple(reversed(stride))


def legacy_header() -> bytes:
    """The three pickles that open a pre-1.6 torch.save stream."""
    return b"".join(pickle.dumps(o, protocol=2) for o in (
        0x1950A86A20F9469CFC6C, 1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}}))


def hash_bomb() -> bytes:
    """A torch zip whose data.pkl is ``{T29: 1}``, T0 = (), Ti = (T(i-1),) * 10: hashing
    the key walks 10**29 tuples (Python does not cache tuple hashes)."""
    q = P(2).raw(b")").put(0)
    for i in range(1, 30):
        q.mark()
        for _ in range(10):
            q.get(i - 1)
        q.raw(b"t").put(i)
    return zip_bytes(torch_zip(q.dict().get(29).raw(b"K\x01s").bytes(), {}))
