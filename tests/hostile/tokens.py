"""A pickle as a list of (opcode, argument) tokens and back, for token-level mutation.

Byte flips mostly break a pickle at its first opcode; changing one argument
(an int, a string, a memo index) or one opcode keeps the rest meaningful, so the
reader's checks deeper in are reached.
"""

from __future__ import annotations

import pickle
import pickletools
import struct

OPS = {op.name: op for op in pickletools.opcodes}


def tokens(data: bytes) -> list[tuple[pickletools.OpcodeInfo, object]]:
    return [(op, arg) for op, arg, _pos in pickletools.genops(data)]


def _n(fmt: str, v: int) -> bytes:
    bits = struct.calcsize(fmt) * 8
    if fmt.endswith("i"):
        v = (v + (1 << bits - 1)) % (1 << bits) - (1 << bits - 1)
    else:
        v %= 1 << bits
    return struct.pack(fmt, v)


def _sized(fmt: str, raw: bytes) -> bytes:
    return struct.pack(fmt, len(raw)) + raw


def _text(arg: object) -> bytes:
    return (arg if isinstance(arg, str) else str(arg)).encode("utf-8", "surrogatepass")


def encode_arg(name: str | None, arg: object) -> bytes:
    if name is None:
        return b""
    if name in ("uint1", "uint2", "int4", "uint4", "uint8"):
        return _n({"uint1": "<B", "uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q"}[name],
                  int(arg))  # type: ignore[call-overload]
    if name == "float8":
        return struct.pack(">d", float(arg))  # type: ignore[arg-type]
    if name in ("long1", "long4"):
        raw = pickle.encode_long(int(arg))  # type: ignore[call-overload]
        return _sized("<B" if name == "long1" else "<i", raw)
    if name in ("string1", "string4"):
        raw = arg.encode("latin-1") if isinstance(arg, str) else bytes(arg)  # type: ignore[arg-type]
        return _sized("<B" if name == "string1" else "<i", raw)
    if name in ("bytes1", "bytes4", "bytes8", "bytearray8"):
        return _sized({"bytes1": "<B", "bytes4": "<I"}.get(name, "<Q"), bytes(arg))  # type: ignore[arg-type]
    if name.startswith("unicodestring") and name != "unicodestringnl":
        return _sized({"unicodestring1": "<B", "unicodestring4": "<I"}.get(name, "<Q"),
                      _text(arg))
    if name == "decimalnl_short":
        return (b"0" + str(int(arg)).encode() if isinstance(arg, bool) else _text(arg)) + b"\n"
    if name == "decimalnl_long":
        return _text(arg) + b"L\n"
    if name == "floatnl":
        return repr(float(arg)).encode() + b"\n"  # type: ignore[arg-type]
    if name == "stringnl":
        return repr(arg).encode("utf-8", "surrogatepass") + b"\n"
    if name == "stringnl_noescape":
        return _text(arg) + b"\n"
    if name == "stringnl_noescape_pair":
        return _text(arg).replace(b" ", b"\n", 1) + b"\n"
    if name == "unicodestringnl":
        return str(arg).encode("raw-unicode-escape") + b"\n"
    raise ValueError(name)


def encode(toks: list[tuple[pickletools.OpcodeInfo, object]]) -> bytes:
    out = bytearray()
    for op, arg in toks:
        out += op.code.encode("latin-1")
        try:
            out += encode_arg(op.arg.name if op.arg else None, arg)
        except (ValueError, TypeError, OverflowError, struct.error):
            pass  # an argument the mutation made unencodable: leave the opcode bare
    return bytes(out)
