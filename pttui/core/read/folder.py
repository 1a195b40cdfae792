"""The checkpoints in a folder, recognised by content, each with what needs attention."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from pttui.core.read import formats
from pttui.core.base.meta import ReadError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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


def list_folder(folder: str, examine: bool = True, *,
                progress: Callable[[str], None] | None = None,
                hung: Mapping[str, str] | None = None,
                deadline: float | None = None) -> list[FileEntry]:
    """Checkpoints directly in ``folder`` plus its subfolders (as entries to open).

    ``examine=False`` only sniffs each file's format (512 bytes), for a list that shows
    at once; the full reading (tensor counts, marks) can follow in a second pass.
    ``progress(path)`` is told each path before it is read; paths in ``hung`` (path ->
    message) are not read again but marked unreadable (see readguard.list_guarded).
    Past ``deadline`` (a ``time.monotonic()`` value) it gives up with TimeoutError: the
    TUI lists a folder at once for its first frame only when that is quick.
    """
    def look(entry: FileEntry) -> None:
        if hung and entry.path in hung:
            _sniff(entry)
            entry.marks.append("unreadable")
            entry.message = hung[entry.path]
            return
        if progress is not None:
            progress(entry.path)
        (_examine if examine else _sniff)(entry)

    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        raise ReadError(f"{folder}: cannot list it ({err.strerror})") from None
    out: list[FileEntry] = []
    for name in names:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{folder}: not listed in time")
        path = os.path.join(folder, name)
        if name.startswith(".") or name == "__pycache__" or name.endswith(_SKIP_EXT):
            continue
        if os.path.isdir(path):
            out.append(_folder_entry(path, name, look))
            continue
        if name.endswith(".json") and not name.endswith(".index.json"):
            continue
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        entry = FileEntry(path, name, size)
        look(entry)
        if "not-checkpoint" not in entry.marks:
            out.append(entry)
    return out


def _folder_entry(path: str, name: str, look=None) -> FileEntry:
    """A DCP folder or a folder holding one sharded index opens as a checkpoint."""
    if os.path.isfile(os.path.join(path, ".metadata")):
        entry = FileEntry(path, name + "/", _tree_size(path))
        (look or _examine)(entry)
        return entry
    try:
        index = formats.checkpoint_in(path)
    except ReadError:  # several sharded sets: a folder to go into
        index = path
    if index != path:
        entry = FileEntry(index, f"{name}/{os.path.basename(index)}", _tree_size(path))
        (look or _examine)(entry)
        return entry
    return FileEntry(path, name + "/", 0, is_dir=True)


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def _sniff(entry: FileEntry) -> None:
    """The format from the first bytes only; what cannot be told now stays unmarked."""
    try:
        entry.format = formats.detect(entry.path)
    except ReadError as err:
        if not entry.name.endswith(_CKPT_EXT):
            entry.marks.append("not-checkpoint")
            return
        entry.marks.append("unreadable")
        entry.message = str(err).removeprefix(entry.path + ": ")


def _examine(entry: FileEntry) -> None:
    from pttui.core.read.reader import open_checkpoint  # not needed for a sniffed listing

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
