"""Reading with a deadline: some pickles are crafted to make Python compute forever.

A 2 KB pickle can build a tuple whose elements are, 30 levels deep, ten references
to the level below, and use it as a dict key: inserting it hashes 10^29 tuples
inside the C unpickler, holding the GIL. Nothing in the reading process can stop
that (no signal handler or other thread runs), and the memo scan cannot see it
without simulating the pickle in Python (10-15% of every large read). So reading
that must not hang happens where it can be killed:

- ``pttui inspect``, ``check``, ``fix``, ``diff`` and the folder listing fork before
  reading: the child does the whole command and prints its own answer, the parent
  only waits (:func:`run_guarded`; a fork of the single-threaded CLI costs ~1 ms);
- the TUI and the shell need the reading in their own process, so they first read
  the file in a child (:func:`preflight`), and only read it themselves once the
  child finished in time.

The deadline covers unpickling only (not the torch import or the model a command
builds): ``PTTUI_READ_DEADLINE`` seconds (default 30) plus one second per MB of
pickle, for each pickle, from the moment the memo scan has measured it
(:func:`pickle_measured`) until it is unpickled (:func:`pickle_done`): about 30
times what a normal read needs.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from pttui.core.base import deadline
from pttui.core.base.orphans import die_with_parent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

READING = ("inspect", "check", "fix", "diff")  # the CLI commands that unpickle files
_POLL_S = 0.02
class _Clock:
    """The deadline of the pickle being unpickled now; none between pickles."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.allowed = 0.0

    def start(self, nbytes: int) -> None:
        self.since, self.allowed = time.monotonic(), deadline.base_deadline() + nbytes / 1e6 * deadline.PER_MB

    def stop(self) -> None:
        self.since = None

    def left(self) -> float | None:
        """Seconds until the deadline (<= 0: passed); None while no pickle is read."""
        return None if self.since is None else self.allowed - (time.monotonic() - self.since)


def _watch(fd: int, cancel: object = None) -> tuple[list[str], str | None, float | None]:
    """Follow a child's report lines on ``fd`` until it closes its end (it exited), the
    clock of a pickle runs out, or ``cancel`` is set. Returns the lines that are not
    clock events, the last ``F`` path, and the deadline in seconds if it ran out (the
    child is then still running) or None. Sleeps in ``select``: it wakes at each line
    and at the child's exit, so a quick command waits for nothing."""
    clock, buf, lines, current = _Clock(), b"", [], None
    while True:
        if cancel is not None and cancel.is_set():  # type: ignore[attr-defined]
            return lines, current, None
        left = clock.left()
        if left is not None and left <= 0:
            return lines, current, clock.allowed
        if cancel is not None:
            left = _POLL_S if left is None else min(left, _POLL_S)
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return lines, current, None
        *done, buf = (buf + chunk).split(b"\n")
        for raw in done:
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            if kind == "P":
                clock.start(int(rest))
            elif kind == "D":
                clock.stop()
            elif kind == "F":
                current = rest
            else:
                lines.append(raw.decode("utf-8", "replace"))


def hung(label: str, seconds: float) -> str:
    return (f"{label}: reading did not finish in {seconds:.0f} s and was stopped: the pickle "
            "is crafted to make Python compute for ever (for instance a dict key that is a "
            "tuple of tuples referencing each other); it is not a usable checkpoint")


def run_guarded(work: Callable[[], int], label: str, lean: bool = False) -> int:
    """Run ``work`` (a whole CLI command: it prints its own output and errors and returns
    an exit code) in a forked child; kill it past the deadline. Where fork is missing,
    or output does not go to the process's own stdout and stderr (``main()`` called
    in-process with captured output), run it here, unguarded. ``lean``: a command that
    only reads (``inspect``) gives freed memory back at once (:func:`_lean_malloc`)."""
    if deadline.report is not None or not hasattr(os, "fork") or sys.stdout is not sys.__stdout__ \
            or sys.stderr is not sys.__stderr__:  # already guarded, or cannot be
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: do the work, report pickle sizes through w
        os.close(r)
        _child(work, w, parent, lean)
    os.close(w)
    old = {sig: signal.signal(sig, _stop_on(pid)) for sig in _FORWARDED}
    try:
        _lines, _path, overdue = _watch(r)
    except KeyboardInterrupt:  # Ctrl-C reached the child too; a hung one cannot notice it
        status = _reap_after_interrupt(pid)
        if status is None:
            sys.stderr.write("pttui: interrupted\n")
            return 130
    except _Stopped as stop:  # SIGTERM/SIGHUP: the child was told, and cleans up
        for sig in _FORWARDED:  # a second signal must not cut the wait short
            signal.signal(sig, signal.SIG_IGN)
        _reap_after_interrupt(pid, grace=5.0)
        return 128 + stop.signum
    else:
        if overdue is not None:
            _kill(pid)
            sys.stderr.write(f"pttui: {hung(label, overdue)}\n")
            return 2
        status = os.waitpid(pid, 0)[1]
    finally:
        os.close(r)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 130 if sig == signal.SIGINT else 128 + sig
    return os.WEXITSTATUS(status)


_FORWARDED = (signal.SIGTERM, signal.SIGHUP)  # Ctrl-C reaches both through the terminal


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on(pid: int) -> Callable[[int, object], None]:
    """The waiting parent's handler: pass the signal on to the child, stop waiting."""
    def handler(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        raise _Stopped(signum)
    return handler


_pending: list[int] = []  # the signal _interrupt_once is turning into KeyboardInterrupt


def _interrupt_once(signum: int, _frame: object) -> None:
    """The child's SIGTERM/SIGHUP: stop as Ctrl-C stops it (an export discards its partial
    file); a second signal (the whole group, then the parent passing it on) is ignored so
    that the cleanup finishes."""
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    _pending[:] = [signum]
    raise KeyboardInterrupt


def _redeliver(unraisable: Any) -> None:
    """sys.unraisablehook in the child. A signal handled while Python runs a weakref
    callback or a ``__del__`` (the import system's lock callbacks) raises where nothing
    can catch it: Python prints "Exception ignored" and goes on, and the export would go
    on to the end. Interrupt again a millisecond later instead, from ordinary code (a
    signal sent now would be handled inside this hook and be swallowed the same way)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _pending:
        signal.signal(signal.SIGALRM, _interrupt_once)
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        return
    sys.__unraisablehook__(unraisable)


def _lean_malloc() -> None:
    """glibc raises its mmap threshold as big blocks are freed (up to 32 MiB), so the
    blocks the unpickler grows and frees (its memo, doubling to 12 MB at 100,000 keys,
    and the dicts) come back from the heap, where freed ones stay resident. A fixed
    128 KiB threshold maps them and unmaps them when freed: 3 MiB less at 100,000 keys.
    Not for an export: its 8 MiB read buffers would be mapped and faulted in anew each
    time (the 2.5 GB export took twice as long). Other C libraries: nothing to do."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _child(work: Callable[[], int], w: int, parent: int, lean: bool) -> None:
    deadline.report = lambda line: os.write(w, line.encode("utf-8") + b"\n")  # noqa: E731
    for sig in _FORWARDED:
        signal.signal(sig, _interrupt_once)
    sys.unraisablehook = _redeliver
    die_with_parent(parent)
    if lean:
        _lean_malloc()
    code = 1
    try:
        code = int(work())
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:  # noqa: BLE001 - --debug re-raises: print it as Python would
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - a closed pipe: the exit code still counts
            pass
        os._exit(code)


def _reap_after_interrupt(pid: int, grace: float = 1.0) -> int | None:
    """The child's status if it stops by itself within ``grace`` s (it then said
    "interrupted" itself), else None after killing it."""
    end = time.monotonic() + grace
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(_POLL_S)
    _kill(pid)
    return None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


# -- the TUI's and the shell's reading: first in a child ------------------------------------

def cli_label(argv: list[str], cmd: str) -> str:
    """The file(s) a CLI command reads, for the one-line message."""
    files = [a for a in argv[argv.index(cmd) + 1:] if not a.startswith("-")]
    return " or ".join(files[:2 if cmd == "diff" else 1]) or cmd


def preflight(path: str, cancel: object = None) -> None:
    """Read ``path`` in a child first; ReadError if the child does not finish in time.

    A file the child cannot read is left for the in-process read to explain (it fails
    the same way, fast). ``cancel`` (anything with ``is_set()``) stops the child. In a
    guarded child already (``pttui check --model ref:X``), the parent's clock covers
    the read: no second child, no second reading.
    """
    if deadline.report is None and not _pickle_free(path):
        ReadingChild(["open", path], cancel).run()  # raises ReadError at the deadline


def _pickle_free(path: str) -> bool:
    """A .safetensors file holds no pickle, so nothing in reading it can hang: no child
    (a Python start and pttui's imports, ~0.15 s before the file even opens)."""
    from pttui.core.read import formats
    from pttui.core.base.meta import ReadError

    try:
        return formats.detect(path) == formats.SAFETENSORS
    except ReadError:
        return False


def open_guarded(path: str, cancel: object = None):  # noqa: ANN201 - a Checkpoint
    """:func:`preflight`, then ``open_checkpoint`` here: what the TUI and the shell use."""
    from pttui.core.read.reader import open_checkpoint

    preflight(path, cancel)
    return open_checkpoint(path)


def list_guarded(folder: str, cancel: object = None) -> list:
    """``list_folder(folder)`` (examined) done in a child; a file that hangs the child is
    marked unreadable and the listing goes on without it. Returns FileEntry objects."""
    import json

    from pttui.core.read.folder import FileEntry

    from pttui.core.base.meta import ReadError

    hung: dict[str, str] = {}
    while True:
        child = ReadingChild(["list", folder, json.dumps(hung)], cancel)
        try:
            lines = child.run()
        except ReadError as err:
            if child.current is None:
                raise
            hung[child.current] = str(err).removeprefix(child.current + ": ")
            continue
        return [FileEntry(**json.loads(line[2:])) for line in lines if line.startswith("E ")]


class ReadingChild:
    """``python -m pttui.core.guard._child ...``, followed by :func:`_watch`."""

    def __init__(self, args: list[str], cancel: object) -> None:
        self.args, self.cancel = args, cancel
        self.current: str | None = None

    def run(self) -> list[str]:
        import subprocess

        from pttui.core.load.sandbox import child_command, child_env, spawn
        from pttui.core.base.meta import ReadError

        proc = spawn([*child_command("pttui.core.guard._child"), *self.args],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, env=child_env(unsafe=False),
                     close_fds=True, start_new_session=True)
        assert proc.stdout is not None
        try:
            lines, self.current, overdue = _watch(proc.stdout.fileno(), self.cancel)
            if overdue is not None:
                raise ReadError(hung(self.current or self.args[1], overdue))
            return lines
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
