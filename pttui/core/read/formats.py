"""Tell a checkpoint's format by its content, never by its extension alone.

Each answer names what to do when a file is not a checkpoint at all, because
"invalid load key, 'v'" is not a message a user can act on.
"""

from __future__ import annotations

import json
import os
import stat
import struct

from pttui.core.read import stfile
from pttui.core.base.meta import ReadError

ZIP, LEGACY, TAR, SAFETENSORS, SHARDED, DCP = (
    "torch-zip", "torch-legacy", "torch-legacy-tar", "safetensors", "sharded", "dcp")
DEEPSPEED = "deepspeed"  # a folder whose ``latest`` names the step folder to read

_OTHER_MAGIC = [  # (magic, what the file is, what to do with it)
    (b"\x93NUMPY", "a NumPy .npy array file", "load it with numpy.load"),
    (b"GGUF", "a GGUF file (llama.cpp)", "convert it with llama.cpp's tools"),
    (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights)", "load it with h5py or Keras"),
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip)"),
    (b"BZh", "a bzip2-compressed file", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ", "an xz-compressed file", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "decompress it first (unzstd)"),
    (b"version https://git-lfs", "a Git LFS pointer, not the weights",
     "run 'git lfs pull' to fetch them"),
    (b"<!DOCTYPE", "an HTML page (a failed download?)",
     "download the file again (check the URL and your access)"),
    (b"<html", "an HTML page (a failed download?)",
     "download the file again (check the URL and your access)"),
]


def checkpoint_in(path: str) -> str:
    """What opening ``path`` opens: a folder holding one sharded set (and no DCP or
    DeepSpeed marker) is that set's ``*.index.json``, as the folder listing shows it."""
    if not os.path.isdir(path) or any(os.path.isfile(os.path.join(path, marker))
                                      for marker in (".metadata", "latest")):
        return path
    try:
        indexes = sorted(n for n in os.listdir(path) if n.endswith(".index.json"))
    except OSError:
        return path
    if len(indexes) > 1:
        raise ReadError(f"{path}: a folder with {len(indexes)} sharded sets "
                        f"({', '.join(indexes[:3])}{', ...' if len(indexes) > 3 else ''}); "
                        "open one of its *.index.json files")
    return os.path.join(path, indexes[0]) if indexes else path


def detect(path: str) -> str:
    """The format name of ``path`` (file or directory), or ReadError saying what it is."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, ".metadata")):
            return DCP
        if os.path.isfile(os.path.join(path, "latest")):
            return DEEPSPEED
        raise ReadError(f"{path}: a folder without a .metadata file; open a checkpoint file "
                        "inside it, or its *.index.json for a sharded set")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a device, pipe or socket: opening one can block
            raise ReadError(f"{path}: not a regular file ({_file_kind(st.st_mode)}); give the "
                            "path of a checkpoint file")
        size = st.st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        raise ReadError.opening(path, err) from None
    if size == 0:
        raise ReadError(f"{path}: the file is empty (0 bytes); the save or copy did not "
                        "finish")
    if head.startswith(b"PK\x03\x04"):
        return ZIP
    if head.startswith(b"PK\x05\x06"):
        raise ReadError(f"{path}: an empty zip archive; not a checkpoint")
    if stfile.looks_like(head, size):
        return SAFETENSORS
    if len(head) >= 262 and head[257:262] == b"ustar":
        return TAR
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return LEGACY
    if head.lstrip()[:1] == b"{" and _is_index(path):
        return SHARDED
    if head[8:9] == b"{" and not _is_text(head[:8]):
        (n,) = struct.unpack_from("<Q", head)
        why = (f"claims {n:,} bytes, but the file holds {size:,}; it is truncated or damaged"
               if n > size - 8 else f"length {n} is impossible; the file is damaged")
        raise ReadError(f"{path}: a safetensors file whose header {why}")
    for magic, what, todo in _OTHER_MAGIC:
        if head.startswith(magic):
            raise ReadError(f"{path}: {what}, not a PyTorch checkpoint; {todo}")
    if _is_old_pickle(head):
        return LEGACY  # protocol 0/1 has no header; the legacy reader names what it is
    if _is_text(head):
        raise ReadError(f"{path}: a text file, not a checkpoint (did a download save an error "
                        "page?)")
    raise ReadError(f"{path}: not a format pttui recognises (torch zip, legacy torch, "
                    "TorchScript, safetensors, sharded index, DCP folder)")


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _is_old_pickle(head: bytes) -> bool:
    """A whole protocol 0/1 pickle in the first bytes (``cposix\nsystem\n...``)."""
    import pickletools

    try:
        ops = [op.name for op, _arg, _pos in pickletools.genops(head)]
    except Exception:  # noqa: BLE001 - anything that does not parse is not a pickle
        return False
    return len(ops) >= 2 and ops[-1] == "STOP"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    return "\x00" not in text and printable >= 0.95 * len(text)


def _is_index(path: str) -> bool:
    if os.path.getsize(path) > 64 << 20:
        return False
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or UTF-8
        return False
    return isinstance(doc, dict) and isinstance(doc.get("weight_map"), dict)
