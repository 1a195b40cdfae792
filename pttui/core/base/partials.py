"""The hidden files exports write into, and the leftovers of exports that were killed.

An export writes ``.NAME.pttui-partial-HOST-PID-XXXXXXXX`` beside its destination
(HOST: 8 hex digits naming this machine, PID: the writer, XXXXXXXX: random) and holds
an exclusive ``flock`` on it from creation until it is renamed into place or removed.
The kernel drops that lock when the writer ends however it ends (SIGKILL, OOM killer,
power loss), so a partial file nobody holds a lock on is a leftover.

:func:`sweep` removes leftovers, and only those: a name matching the pattern exactly,
written on this machine (locks on a network filesystem may not reach other machines),
a regular file owned by this user, not a link, and whose lock it can take itself; it
unlinks while holding that lock, after checking the name still leads to the file it
locked. A writer checks, once it holds its lock, that its file still has its name, so
a sweep racing the creation of a new file costs that writer a retry, never its data.
Where locks are not available the answer is "cannot tell", and nothing is removed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import socket
import stat
import tempfile
import time
from dataclasses import dataclass

TAG = "pttui-partial"
PATTERN = re.compile(r"\.(?P<target>.+)\." + TAG
                     + r"-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})-[a-z0-9_]{8}", re.S)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL,
             getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
_NAME_MAX = 255
_LOCK_WAIT = 5.0  # seconds a new file waits for a sweep or a look to let go of it


def _host_tag() -> str:
    try:
        with open("/etc/machine-id", "rb") as f:
            machine = f.read(64).strip()
    except OSError:
        machine = b""
    return hashlib.sha256(socket.gethostname().encode() + b"\0" + machine).hexdigest()[:8]


HOST = _host_tag()


@dataclass
class Leftover:
    name: str  # the partial file's name in its folder
    pid: int  # the writer that left it
    size: int


def create(folder: str, name: str) -> tuple[int, str]:
    """A new, empty partial file for ``folder/name``, locked: ``(fd, path)``. Keep ``fd``
    open (or a dup of it) until the file is renamed into place or removed."""
    shown = name
    room = _NAME_MAX - len(f"..{TAG}-{HOST}-{os.getpid()}-12345678")
    while len(os.fsencode(shown)) > room:  # a very long name: its start identifies it
        shown = shown[:-1]
    for _ in range(20):
        fd, path = tempfile.mkstemp(prefix=f".{shown}.{TAG}-{HOST}-{os.getpid()}-",
                                    dir=folder)
        if _lock_new(fd, path):
            return fd, path
        os.close(fd)  # a sweep removed it before we held it: make another
    raise OSError(errno.EBUSY, "could not create a partial file nobody else holds")


def _lock_new(fd: int, path: str) -> bool:
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # a sweep or a look holds it for a moment
            if time.monotonic() > deadline:
                _unlink_if_same(path, os.fstat(fd))
                return False
            time.sleep(0.005)
        except OSError as err:
            if err.errno in _NO_LOCKS:  # nobody can lock here, so no sweep removes it
                return True
            raise
    st = os.fstat(fd)
    return st.st_nlink > 0 and _same(path, st)


def _same(path: str, st: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _unlink_if_same(path: str, st: os.stat_result) -> None:
    if _same(path, st):
        try:
            os.unlink(path)
        except OSError:
            pass


def leftovers(folder: str) -> list[Leftover]:
    """The partial files in ``folder`` whose writer is gone (nothing is removed)."""
    return _scan(folder, remove=False)


def sweep(folder: str) -> list[Leftover]:
    """Remove the partial files in ``folder`` whose writer is gone; what was removed."""
    return _scan(folder, remove=True)


def sweep_note(folder: str) -> list[str]:
    """:func:`sweep`, said in one line for an export's notes (none when nothing was left)."""
    gone = sweep(folder)
    if not gone:
        return []
    from pttui.core.base import humanize as hz

    names = ", ".join(g.name for g in gone[:3]) + (f" and {len(gone) - 3} more"
                                                   if len(gone) > 3 else "")
    what = ("partial export from a killed run" if len(gone) == 1
            else "partial exports from killed runs")
    return [f"removed {len(gone)} leftover {what} "
            f"({hz.nbytes(sum(g.size for g in gone))}): {names}"]


def _scan(folder: str, remove: bool) -> list[Leftover]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        m = PATTERN.fullmatch(name)
        if m is None or m["host"] != HOST:
            continue
        size = _if_abandoned(os.path.join(folder, name), remove)
        if size is not None:
            found.append(Leftover(name, int(m["pid"]), size))
    return found


def _if_abandoned(path: str, remove: bool) -> int | None:
    """The file's size if no writer holds it (then removed when ``remove``), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return None
    fd = _open(path)
    if fd is None:
        return None
    try:
        if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != (st.st_dev, st.st_ino):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by its writer, or no locks here: cannot tell, keep it
            return None
        if remove:
            if not _same(path, st):
                return None
            try:
                os.unlink(path)  # still holding the lock: no writer can be using it
            except OSError:
                return None
        return st.st_size
    finally:
        os.close(fd)


def _open(path: str) -> int | None:
    """Opened without following links or blocking; for writing where it can be (NFS
    grants an exclusive lock only to a file opened for writing)."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    for mode in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.open(path, mode | flags)
        except OSError:
            continue
    return None


# -- finishing a partial file -------------------------------------------------------------

def make_ordinary(fd: int) -> None:
    """mkstemp makes files 0600; a finished export is an ordinary file (0666 minus umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def discard(path: str | None, fd: int | None) -> None:
    """Remove an unfinished partial file (if it is still there), then let go of its lock."""
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
    if fd is not None:
        os.close(fd)


def publish(tmp: str, out: str, replace: bool) -> None:
    """Move the finished ``tmp`` to ``out``, durably. Without ``replace`` a file that
    appeared at ``out`` meanwhile is kept (FileExistsError): a hard link fails rather
    than clobber; where links do not work, the check and rename are separate steps."""
    if replace:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise
        except OSError:
            if os.path.lexists(out):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), out) from None
            os.replace(tmp, out)
        else:
            os.unlink(tmp)
    _fsync_dir(os.path.dirname(out) or ".")


def _fsync_dir(folder: str) -> None:
    """Make the rename itself durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename is done all the same
