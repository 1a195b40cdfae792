"""What a file is before torch sees it: magic bytes and a zip's directory, no unpickling.

``pttui load`` needs this to choose the loader (safetensors or torch.load), to
default ``mmap`` on for torch zip files (off when another tool compressed their
records: torch would map the compressed bytes as tensor data), and to explain failures whose torch
message says nothing useful (a truncated zip can fail with a bare "Invalid argument";
a text file with "invalid load key").
"""

from __future__ import annotations

import os
import stat
import zipfile
from typing import NamedTuple

from pttui.core.read import formats, stfile
from pttui.core.base.meta import ReadError

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
        return Sniffed(fmt, "the index of a sharded checkpoint: pttui reads the index; "
                            "torch.load cannot: load each shard, or export the set with "
                            "pttui fix")
    if fmt == formats.ZIP:
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                packed = sum(i.compress_type != zipfile.ZIP_STORED for i in infos)
                damage = _crc_damage(zf, infos)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            return Sniffed(fmt, damage=f"its zip directory cannot be read ({err})")
        return Sniffed(fmt, damage=damage, compressed=packed)
    return Sniffed(fmt)


_CHECK_CRC_UPTO = 512 << 20  # data.pkl: torch reads it whole anyway
_SMALL_RECORD = 1 << 20


def _crc_damage(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> str | None:
    """The first record whose bytes fail their CRC: data.pkl (the object tree) and the
    small records beside it (version, byteorder, ...). torch checks no CRC: a damaged
    data.pkl reaches its unpickler, which calls the damage an unsupported operand. Tensor
    records (``data/N``) are not read: that would read the whole file before each load."""
    for info in infos:
        name = info.filename
        parts = name.split("/")
        pickle = len(parts) == 2 and parts[1].lower() == "data.pkl"
        if (not pickle and (len(parts) != 2 or info.file_size > _SMALL_RECORD)) \
                or info.file_size > _CHECK_CRC_UPTO:
            continue
        try:
            with zf.open(info) as rec:
                while rec.read(1 << 20):
                    pass
        except zipfile.BadZipFile as err:
            if "CRC" not in str(err):
                return f"record {_short(name)} cannot be read ({err})"
            what = "the pickle (data.pkl)" if pickle else f"record {_short(name)}"
            return (f"{what} fails its CRC check: its bytes changed after the save (a damaged "
                    "copy, download or disk)")
        except (NotImplementedError, RuntimeError, OSError, EOFError, ValueError,
                zipfile.LargeZipFile):
            continue  # encrypted or an unknown method: torch says so itself
    return None


def _short(name: str, limit: int = 80) -> str:
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def _starts_like_safetensors(path: str) -> bool:
    """8-byte little-endian header length, then '{' (the file may be cut short)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a pipe would block the open; formats.detect says what it is
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return (len(head) == 9 and head[8:9] == b"{"
            and 2 <= int.from_bytes(head[:8], "little") <= stfile.MAX_HEADER)
