"""Where the tensors of a load go: checked before, verified and published after.

A load child may write what it loaded to a ``.safetensors`` file (the only way
weights leave a ``weights_only=False`` load). The child writes into a partial
file beside the destination, which the parent made and holds locked (so a load
killed outright leaves a leftover the next export sweeps); the parent then reads the
header back with pttui's own validating reader, checks the tensor count against
the child's report, and renames it into place without replacing anything that
appeared meanwhile. A failed, cancelled or killed load leaves no output.
"""

from __future__ import annotations

import os
from typing import Any

from pttui.core.base import partials
from pttui.core.read import stfile
from pttui.core.base.meta import ReadError

SUFFIX = ".safetensors"


def check_destination(dest: str, source: str, map_location: str, overwrite: bool) -> str:
    """The absolute destination, or a ReadError that says what is wrong with it."""
    dest = os.path.abspath(os.fspath(dest))
    folder = os.path.dirname(dest)
    if os.path.isdir(dest):
        raise ReadError(f"{dest}: is a folder; give a file name ending in {SUFFIX}")
    if not dest.endswith(SUFFIX):
        raise ReadError(f"{dest}: the tensors are written as safetensors; name the file "
                        f"*{SUFFIX}")
    if map_location == "meta":
        raise ReadError("meta tensors hold no data, so there is nothing to save; load with "
                        "--map-location cpu to save the tensors")
    if not os.path.isdir(folder):
        raise ReadError(f"{folder}: no such folder; create it first")
    if os.path.exists(dest) and os.path.samefile(dest, source):
        raise ReadError(f"{dest}: is the checkpoint being loaded; save the tensors elsewhere")
    if os.path.lexists(dest) and not overwrite:
        raise ReadError(f"{dest}: already exists; choose another name or replace it "
                        "(--overwrite)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReadError(f"{folder}: permission denied; save the tensors somewhere you can "
                        "write")
    return dest


def default_destination(source: str) -> str:
    """Where an interactive unsafe load keeps the tensors: ``STEM.weights.safetensors``
    beside the checkpoint (numbered if taken), or under pttui's data folder when the
    checkpoint's folder is not writable."""
    folder, name = os.path.split(os.path.abspath(source))
    stem = name.split(".")[0] or name
    if not os.access(folder, os.W_OK | os.X_OK):
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                               ".local", "share")
        folder = os.path.join(base, "pttui", "weights")
        os.makedirs(folder, mode=0o700, exist_ok=True)
    for n in range(1, 1000):
        dest = os.path.join(folder, f"{stem}.weights{'' if n == 1 else f'-{n}'}{SUFFIX}")
        if not os.path.lexists(dest):
            return dest
    raise ReadError(f"{folder}: 999 saved weight files of {name} already; remove some")


def make_partial(dest: str) -> tuple[int, str]:
    """An empty file beside ``dest`` for the child to fill (same filesystem, so publishing
    is a rename): ``(fd, path)``. Keep ``fd`` open until :func:`publish` or :func:`discard`:
    its lock tells the next export that this file is in use (see :mod:`partials`)."""
    folder, name = os.path.split(dest)
    return partials.create(folder, name)


def publish(partial: str, fd: int, dest: str, saved: dict[str, Any], overwrite: bool) -> None:
    """Verify the child's file and move it to ``dest``; ReadError if anything is off."""
    size = os.path.getsize(partial)
    with open(partial, "rb") as f:
        header, _ = stfile.read_header(f, size, dest)
    count = sum(1 for k in header if k != "__metadata__")
    if count != saved.get("tensors") or size < int(saved.get("bytes", 0)):
        raise ReadError(f"{dest}: the written file does not match what the load reported "
                        f"({count} of {saved.get('tensors')} tensors); nothing was saved")
    partials.make_ordinary(fd)
    try:
        partials.publish(partial, dest, replace=overwrite)
    except FileExistsError:
        raise ReadError(f"{dest}: appeared while loading; not replacing it") from None

