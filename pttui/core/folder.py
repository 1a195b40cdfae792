"""The checkpoints in a folder, recognised by content, each with what needs attention."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pttui.core import formats
from pttui.core.meta import ReadError
from pttui.core.reader import open_checkpoint

# Files never worth sniffing: source, docs, images, logs.
_SKIP_EXT = (".py", ".md", ".txt", ".rst", ".png", ".jpg", ".jpeg", ".svg", ".log", ".yaml",
             ".yml", ".toml", ".cfg", ".ini", ".sh", ".csv", ".pyc")
# Extensions a checkpoint usually has: listed even when unreadable.
_CKPT_EXT = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar", ".pkl", ".pickle", ".pt2",
             ".model", ".weights", ".index.json")
_BADGES = {formats.ZIP: "zip", formats.LEGACY: "legacy", "torchscript": "TorchScript",
           formats.SAFETENSORS: "safetensors", formats.SHARDED: "sharded", formats.DCP: "DCP",
           formats.TAR: "legacy-tar"}


@dataclass
class FileEntry:
    path: str
    name: str
    size: int
    format: str | None = None
    tensors: int = 0
    marks: list[str] = field(default_factory=list)  # unsafe-globals, cuda-saved, unreadable
    message: str = ""
    is_dir: bool = False

    @property
    def badge(self) -> str:
        return _BADGES.get(self.format or "", "?")

    @property
    def needs_attention(self) -> bool:
        return bool(self.marks)


def list_folder(folder: str) -> list[FileEntry]:
    """Checkpoints directly in ``folder`` plus its subfolders (as entries to open)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        raise ReadError(f"{folder}: cannot list it ({err.strerror})") from None
    out: list[FileEntry] = []
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") or name == "__pycache__" or name.endswith(_SKIP_EXT):
            continue
        if os.path.isdir(path):
            is_dcp = os.path.isfile(os.path.join(path, ".metadata"))
            entry = FileEntry(path, name + "/", 0, is_dir=not is_dcp)
            if is_dcp:
                _examine(entry)
            out.append(entry)
            continue
        if name.endswith(".json") and not name.endswith(".index.json"):
            continue
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        entry = FileEntry(path, name, size)
        _examine(entry)
        if "not-checkpoint" not in entry.marks:
            out.append(entry)
    return out


def _examine(entry: FileEntry) -> None:
    try:
        ckpt = open_checkpoint(entry.path)
    except ReadError as err:
        entry.format = _format_or_none(entry.path)
        if entry.format is None and not entry.name.endswith(_CKPT_EXT):
            entry.marks.append("not-checkpoint")
            return
        entry.marks.append("unreadable")
        entry.message = str(err).removeprefix(entry.path + ": ")
        return
    entry.format = ckpt.format
    entry.tensors = len(ckpt.tensors)
    if ckpt.globals.dangerous:
        entry.marks.append("unsafe-globals")
    elif ckpt.globals.blocked and ckpt.format not in (formats.DCP, "torchscript"):
        entry.marks.append("needs-allowlist")
    if any(d.startswith("cuda") for d in ckpt.devices):
        entry.marks.append("cuda-saved")
    if any(n.startswith("problem:") for n in ckpt.notes):
        entry.marks.append("damaged")


def _format_or_none(path: str) -> str | None:
    try:
        return formats.detect(path)
    except ReadError:
        return None
