"""One weights file of a single-file format (torch zip, legacy pickle, pre-1.0 tar,
safetensors) -> :class:`Checkpoint`; and the checks every multi-file door shares
(a member path that stays inside its folder, a name printed on one line).

``unpickle_only``: the guard's preflight child only proves that unpickling ends; it
skips finding containers and the rest (the parent reads the file itself).
"""

from __future__ import annotations

import os

from pttui.core.base.meta import Checkpoint, Container, GlobalsScan, ReadError
from pttui.core.base import humanize as hz
from pttui.core.read import containers as ct
from pttui.core.read import formats, stfile
from pttui.core.read.pickle import globalscan
from pttui.core.read.pickle.unpickler import called_globals
from pttui.core.read.torchfile import Unpickled, read_legacy, read_zip
from pttui.core.read.zipindex import ZipIndex

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

FORMATS = (formats.ZIP, formats.LEGACY, formats.TAR, formats.SAFETENSORS)


def one_line(text: str) -> str:
    """Names inside a message come from the file: no newline or escape code gets out."""
    return hz.printable(text)


def read(path: str, fmt: str, shard: str | None = None, unpickle_only: bool = False
         ) -> Checkpoint:
    """The file at ``path``, already detected as ``fmt``; ``shard``: its name in a set."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if fmt == formats.SAFETENSORS:
            container, meta = stfile.read(f, size, path, shard)
            notes = stfile.restore_aliases(container, meta)
            return Checkpoint(path, fmt, [container], (), metadata=dict(meta),
                              other={"__metadata__": meta} if meta else {}, notes=notes)
        if fmt == formats.ZIP:
            un = read_zip(f, ZipIndex(f, size, path, lean=True), path, shard)
        elif fmt == formats.TAR:
            from pttui.core.read.legacytar import read_tar  # PyTorch 0.1-0.3: rare

            un = read_tar(f, size, path, shard)
        else:
            un = read_legacy(f, size, path, shard)
    return _from_unpickled(path, un, unpickle_only)


def _from_unpickled(path: str, un: Unpickled, unpickle_only: bool) -> Checkpoint:
    if unpickle_only:  # the parent reads the file itself once the child finished in time
        return Checkpoint(path, un.format, [], None, GlobalsScan(), {}, [])
    walker = ct.Walker(path)
    found = ct.find_containers(un.root, walker)
    chosen = ct.best(found)
    scan = globals_scan(un.unpickler, torchscript=un.format == "torchscript")
    notes = list(un.notes) + [f"problem: {p}" for p in _dedupe(un.problems)]
    if not found:
        notes.append("no tensors found: this file holds no weights")
    ckpt = Checkpoint(path, un.format, found, chosen.path if chosen else None, scan,
                      ct.other_entries(un.root, walker), notes)
    ckpt.storage_offsets = un.offsets
    ckpt.state_metadata = _state_metadata(un.root, chosen)
    return ckpt


def globals_scan(up: Any, torchscript: bool = False) -> GlobalsScan:
    """Every global the pickle names, plus the ``numpy.dtypes`` classes of the NumPy dtypes
    it builds: torch's weights-only load needs those allow-listed too."""
    names = list(up.globals) + globalscan.numpy_dtype_classes(up.numpy_dtypes)
    firsts = {n: g.first_call for n, g in up.globals.items()
              if getattr(g, "first_call", None) is not None}
    return globalscan.scan(names, called_globals(up), torchscript, firsts)


def _dedupe(items: list[str], limit: int = 20) -> list[str]:
    out = list(dict.fromkeys(items))
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def _state_metadata(root: Any, chosen: Container | None) -> Any:
    """The ``_metadata`` a state_dict carries (BatchNorm versions); export keeps it."""
    node = root
    for part in (chosen.path if chosen else ()):
        node = dict(ct.children(node)).get(part)
    return getattr(node, "_metadata", None) if isinstance(node, dict) else None


# -- sharded sets -------------------------------------------------------------------


def inside(folder: str, name: str, label: str, what: str, want_dir: bool = False) -> str:
    """``folder/name``, refusing a name that leads outside ``folder`` (``..``, an
    absolute path, a symlink) or that is not there."""
    shown = one_line(name[:200])
    if not name or "\x00" in name:
        raise ReadError(f"{label}: names an empty or invalid {what} ({shown!r}); refusing")
    target = os.path.realpath(os.path.join(folder, name))
    if os.path.commonpath([os.path.realpath(folder), target]) != os.path.realpath(folder):
        raise ReadError(f"{label}: the {what} {shown} is outside its folder; refusing to "
                        "follow it")
    if not (os.path.isdir(target) if want_dir else os.path.isfile(target)):
        raise ReadError(f"{label}: {what} {shown} is missing; download or copy the whole set")
    return target
