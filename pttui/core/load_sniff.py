"""What a file is before torch sees it: magic bytes and a zip's directory, no unpickling.

``pttui load`` needs this to choose the loader (safetensors or torch.load), to
default ``mmap`` on for torch zip files (off when another tool compressed their
records: torch would map the compressed bytes as tensor data), and to explain failures whose torch
message says nothing useful (a truncated zip can fail with a bare "Invalid argument";
a text file with "invalid load key").
"""

from __future__ import annotations

import zipfile
from typing import NamedTuple

from pttui.core import formats, stfile
from pttui.core.meta import ReadError

_TORCH_LEGACY_MAGIC = b"l\xfc\x9cF\xf9 j\xa8P\x19"  # pickled 0x1950a86a20f9469cfc6c


class Sniffed(NamedTuple):
    """What the first bytes say: the format, and what is wrong when pttui can tell itself."""

    format: str
    not_checkpoint: str | None = None  # what the file is instead, in words
    damage: str | None = None  # a torch zip whose structure is broken, in words
    compressed: int = 0  # zip records stored compressed: torch's mmap maps them raw


def sniff(path: str) -> Sniffed:
    """Look at ``path`` without loading it: magic bytes, and a zip's central directory."""
    try:
        fmt = formats.detect(path)
    except ReadError as err:
        if _starts_like_safetensors(path):  # a damaged one: let safetensors say what is wrong
            return Sniffed(formats.SAFETENSORS)
        return Sniffed("unknown", str(err).removeprefix(f"{path}: "))
    if fmt == formats.LEGACY:
        with open(path, "rb") as f:
            if _TORCH_LEGACY_MAGIC not in f.read(64):
                return Sniffed("pickle", "a plain pickle (pickle.dump, joblib, ...), not a "
                                         "file torch.save wrote")
    if fmt == formats.SHARDED:
        return Sniffed(fmt, "the index of a sharded checkpoint; load the shard files it lists "
                            "(or open the index with 'pttui inspect')")
    if fmt == formats.ZIP:
        try:
            with zipfile.ZipFile(path) as zf:
                packed = sum(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            return Sniffed(fmt, damage=f"its zip directory cannot be read ({err})")
        return Sniffed(fmt, compressed=packed)
    return Sniffed(fmt)


def _starts_like_safetensors(path: str) -> bool:
    """8-byte little-endian header length, then '{' (the file may be cut short)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b"{"
            and 2 <= int.from_bytes(head[:8], "little") <= stfile.MAX_HEADER)
