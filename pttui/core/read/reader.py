"""``open_checkpoint``: any supported file or folder -> :class:`Checkpoint`, metadata only.

Reads no tensor bytes, runs no pickled code and imports nothing named in a file;
time grows with the number of keys, not the size of the file.
"""

from __future__ import annotations

import gc

from pttui.core.base.meta import Checkpoint, ReadError
from pttui.core.read import dcpfolder, deepspeed, formats, sharded, weightsfile
from pttui.core.read.weightsfile import one_line as _one_line

# One door per format that is more than one file; every single-file format goes
# through weightsfile. A new layout (ZeRO shards, FSDP) is one module and one line here.
DOORS = {formats.SHARDED: sharded.read, formats.DCP: dcpfolder.read,
         formats.DEEPSPEED: deepspeed.read}


def open_checkpoint(path: str, select: tuple[str, ...] | list[str] | None = None, *,
                    unpickle_only: bool = False) -> Checkpoint:
    """Read ``path``'s structure. ``select`` picks a container by its path.
    ``unpickle_only``: only run the unpickling (the guard's preflight proves it ends)
    and return an empty Checkpoint."""
    # Reading allocates one small object per key and frees none: the cyclic GC would
    # rescan them all again and again (half the time on a 100,000-key file).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _open(path, select, unpickle_only)
    except ReadError as err:
        text = str(err)
        if text.isprintable():
            raise
        raise ReadError(_one_line(text)) from None
    except OSError as err:  # a shard or record vanished or became unreadable meanwhile
        raise ReadError(_one_line(f"{path}: cannot read it ({err.strerror or err})")) from None
    except MemoryError:
        raise ReadError(f"{_one_line(path)}: reading it needs more memory than there is; "
                        "the file is damaged or hostile") from None
    finally:
        if enabled:
            gc.enable()


def _open(path: str, select: tuple[str, ...] | list[str] | None,
          unpickle_only: bool) -> Checkpoint:
    path = formats.checkpoint_in(path)
    fmt = formats.detect(path)  # refuses what is not a checkpoint, saying what it is
    door = DOORS.get(fmt)
    ckpt = (door(path, unpickle_only) if door is not None
            else weightsfile.read(path, fmt, unpickle_only=unpickle_only))
    if select is not None:
        want = tuple(select)
        if ckpt.container(want) is None:
            have = ", ".join(".".join(c.path) or "(root)" for c in ckpt.containers) or "none"
            raise ReadError(f"{path}: no container {'.'.join(want) or '(root)'}; "
                            f"the containers are: {have}")
        ckpt.selected = want
    return ckpt
