"""Refuse pickles whose memo indices would make the C unpickler allocate gigabytes.

CPython's ``_pickle`` keeps its memo in an array and grows it to twice the
index a PUT names: ``LONG_BINPUT 0x60000000`` in a 10-byte pickle makes it
allocate and zero 24 GB before anything else happens. No unpickler hook sees a
PUT, so the opcodes are scanned first. A regex walks the common opcodes at C
speed (the scan costs ~8% of a read); the table below handles everything the
regex stops at, so the regex only decides speed, never the answer. The same scan
refuses a length prefix that runs past the data, which _pickle would allocate
before noticing (a 6 TB BYTEARRAY8 in a 100-byte file).
"""

from __future__ import annotations

import re
import struct

from pttui.core.base.meta import ReadError

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

FREE_INDEX = 1 << 21  # memo indices the regex lets through: at most a 32 MB memo

_NOARG = b"(012NQRabd}el]ost)u" + bytes([0x81, *range(0x85, 0x8A), *range(0x8F, 0x95), 0x97,
                                          0x98])


def _short_strings(op: bytes, pad: bytes, upto: int = 64) -> bytes:
    """Length-prefixed strings shorter than ``upto``: one branch per length byte."""
    branches = (re.escape(bytes([n]) + pad) + (b".{%d}" % n if n else b"") for n in range(upto))
    return re.escape(op) + b"(?:" + b"|".join(branches) + b")"


_RUN = re.compile(b"(?:" + b"|".join([
    b"[qhK\x82\x80].",  # one-byte argument
    b"[" + b"".join(re.escape(bytes([c])) for c in _NOARG) + b"]",
    b"r..[\x00-\x1f]\x00",  # LONG_BINPUT below FREE_INDEX
    b"[Jj\x84]....",
    _short_strings(b"X", b"\x00\x00\x00"),
    b"[M\x83]..",
    _short_strings(b"\x8c", b""),
    b"G........",  # BINFLOAT
    b"[ILFSVgP][^\n]*\n",
    b"p[0-9]{1,6}\n",
    b"[ci][^\n]*\n[^\n]*\n",
]) + b")*+", re.S)

# What the scan does at each opcode the regex stopped at.
_FIXED = {**dict.fromkeys(_NOARG, 0), **dict.fromkeys(b"qhK\x82\x80", 1),
          **dict.fromkeys(b"M\x83", 2), **dict.fromkeys(b"Jj\x84", 4),
          **dict.fromkeys(b"G", 8)}
_PREFIXED = {op: struct.Struct(fmt) for op, fmt in (
    (0x8A, "<B"), (0x8B, "<I"), (ord("T"), "<I"), (ord("U"), "<B"), (ord("X"), "<I"),
    (0x8C, "<B"), (0x8D, "<Q"), (0x8E, "<Q"), (0x96, "<Q"), (ord("B"), "<I"), (ord("C"), "<B"),
    (0x95, "<Q"))}  # FRAME: its length covers the opcodes that follow
_LINES = {**dict.fromkeys(b"ILFSVgP", 1), **dict.fromkeys(b"ci", 2)}


def check(data: Any, start: int, label: str, end: int | None = None) -> int:
    """Scan the pickle at ``data[start:end]`` (bytes or mmap) up to its STOP; raise ReadError
    for a memo index no pickle of this size needs. Returns where the scan ended (the
    STOP, or the point where the unpickler will refuse a malformed stream), ``end`` when
    the bytes ran out first."""
    n = len(data) if end is None else end
    limit = max(FREE_INDEX, (n - start) // 4)
    pos, run = start, _RUN.match
    while pos < n:  # a fixed-size argument can step past the end: the bytes ran out
        pos = run(data, pos, n).end()
        if pos >= n:
            return n
        op = data[pos]
        if op in _FIXED:
            pos += 1 + _FIXED[op]
        elif op in _PREFIXED:
            size = _PREFIXED[op]
            if pos + 1 + size.size > n:
                return n
            length = size.unpack_from(data, pos + 1)[0]
            pos += 1 + size.size
            if pos + length > n:  # _pickle would allocate it first (and CPython's
                raise ReadError(   # bytearray then prints a SystemError): refuse here
                    f"{label}: the pickle is damaged (an item claims {length:,} bytes, "
                    f"{n - pos:,} remain); the file is truncated or crafted")
            if op != 0x95:
                pos += length
        elif op in _LINES:
            for _ in range(_LINES[op]):
                end = data.find(b"\n", pos + 1, n)
                if end < 0:
                    return n
                pos = end
            pos += 1
        elif op == 0x72:  # LONG_BINPUT
            if pos + 5 > n:
                return n
            _refuse_above(struct.unpack_from("<I", data, pos + 1)[0], limit, label)
            pos += 5
        elif op == 0x70:  # PUT, text
            end = data.find(b"\n", pos + 1, n)
            if end < 0:
                return n
            try:
                index = int(bytes(data[pos + 1:end]))
            except ValueError:
                return pos  # the unpickler refuses it too
            _refuse_above(index, limit, label)
            pos = end + 1
        else:
            return pos  # STOP, or an opcode the unpickler refuses
    return n


def _refuse_above(index: int, limit: int, label: str) -> None:
    if index > limit:
        raise ReadError(f"{label}: the pickle stores an object at memo slot {index:,}; "
                        f"unpickling it would allocate {16 * index:,} bytes (a crafted "
                        "file); refusing")
