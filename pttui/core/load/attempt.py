"""Real ``torch.load`` attempts, each in a child process that can be cancelled.

The pttui process never unpickles a user's file with torch: a C-level unpickle
holds the GIL (the UI would freeze), can take all memory, can crash, and with
``weights_only=False`` runs the file's code. So every attempt spawns
``python -m pttui.core.load._child`` in its own process group, which reports back
one JSON object; cancelling kills the whole group, which frees its memory.

**One load at a time.** A module-level lock admits one running child per pttui
process: two checkpoints in memory at once is how a box runs out of RAM. An
attempt started while another runs waits in state ``queued`` (``start`` and
``poll`` never block); a queued attempt also collects a finished predecessor
nobody polled, so a forgotten handle cannot wedge the queue.

Use :func:`attempt_load` from a script or a thread, or drive a
:class:`LoadAttempt` (``start`` / ``poll`` / ``cancel`` / ``wait``) from a worker.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from typing import Any

from pttui.core.device import devices
from pttui.core.read import formats
from pttui.core.load import output as load_output, sandbox as load_sandbox
from pttui.core.base import partials
from pttui.core.load import failures as lf
from pttui.core.load.failures import LoadFailure
from pttui.core.load.sniff import sniff
from pttui.core.load.policy import LoadPolicy, LoadResult
from pttui.core.base.meta import ReadError

_POLL_S = 0.03
_LOAD_LOCK = threading.Lock()  # held by the one attempt whose child runs now
_current: LoadAttempt | None = None
_live: set[LoadAttempt] = set()  # running children, killed at exit


class LoadAttempt:
    """One load, driven without blocking: ``start()``, then ``poll()`` until a result.

    States: new -> queued (waiting for the one-at-a-time lock) -> running -> done.
    ``timeout`` counts from the moment the child starts. ``memory_limit`` (bytes
    above the child's baseline) makes an overrun a MemoryError; an unsafe load gets
    one by default. ``save_to`` names a ``.safetensors`` file the child writes every
    loaded tensor to (see :mod:`pttui.core.load.output`); ``overwrite`` lets it
    replace an existing one. Raises ReadError for a path that cannot be read or a
    destination that cannot be written, ValueError for ``weights_only=False``
    without ``consent=True``.
    """

    def __init__(self, path: str | os.PathLike[str], policy: LoadPolicy | None = None, *,
                 consent: bool = False, force: bool = False, timeout: float | None = None,
                 memory_limit: int | None = None, save_to: str | None = None,
                 overwrite: bool = False) -> None:
        self.policy = policy or LoadPolicy()
        if not self.policy.weights_only and not consent:
            raise ValueError("weights_only=False runs the code pickled in the file; pass "
                             "consent=True only after the user explicitly agreed")
        self.path = formats.checkpoint_in(os.path.abspath(os.fspath(path)))
        self.size = _check_readable(self.path)
        self.save_to = None if save_to is None else load_output.check_destination(
            save_to, self.path, self.policy.map_location, overwrite)
        self.overwrite = overwrite
        self._partial: str | None = None
        self._partial_fd: int | None = None
        self.sniffed = sniff(self.path)
        self.format = self.sniffed.format
        self.mmap = self.policy.mmap if self.policy.mmap is not None else (
            self.format == formats.ZIP and not self.sniffed.compressed)
        self.force, self.timeout, self.memory_limit = force, timeout, memory_limit
        self.state = "new"
        self.result: LoadResult | None = None
        self.pid: int | None = None
        self._mu = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = b""
        self._reader: threading.Thread | None = None
        self._err: Any = None
        self._cwd: str | None = None
        self._t0 = 0.0

    # -- public ------------------------------------------------------------------------

    def start(self) -> LoadAttempt:
        with self._mu:
            if self.state != "new":
                return self
            self._t0 = time.monotonic()
            refusal = None if self.force else self._precheck()
            if refusal is not None:
                self._finish(refusal)
                return self
            self.state = "queued"
            self._try_spawn()
            return self

    def poll(self) -> LoadResult | None:
        """The result when done, else None; never blocks. Also enforces the timeout."""
        with self._mu:
            if self.state == "new":
                self.start()
            if self.state == "queued":
                self._try_spawn()
            if self.state == "running":
                if load_sandbox.exited(self.pid):
                    self._collect()
                elif self.timeout is not None and time.monotonic() - self._t0 > self.timeout:
                    self._kill()
                    self._finish(lf.timed_out(self.timeout))
            return self.result

    def cancel(self) -> LoadResult:
        """Stop now: kill the child's process group (its memory is freed) or leave the queue."""
        with self._mu:
            if self.state == "running":
                self._kill()
            if self.state != "done":
                self._finish(lf.cancelled())
            assert self.result is not None
            return self.result

    def wait(self, timeout: float | None = None) -> LoadResult | None:
        """Block until done (None if ``timeout`` seconds pass first)."""
        end = None if timeout is None else time.monotonic() + timeout
        while (r := self.poll()) is None:
            if end is not None and time.monotonic() >= end:
                return None
            time.sleep(_POLL_S)
        return r

    # -- internals -----------------------------------------------------------------------

    def _precheck(self) -> LoadFailure | None:
        """Refuse, with numbers, a load that cannot fit (file size as the estimate), and a
        path that is no regular file (a pipe would block the child's open for ever)."""
        if not os.path.isfile(self.path) and not os.path.isdir(self.path):
            what = self.sniffed.not_checkpoint or "not a regular file"
            what = f"{what[:1].upper()}{what[1:]}."
            return lf.LoadFailure(lf.NOT_A_CHECKPOINT, "", what, headline=what)
        target = self.policy.map_location
        if target == "meta":
            return None
        device = "cpu" if target in ("cpu", "keep") else target
        fit = devices.fits(self.size, devices.snapshot(), device)
        if fit.device == "cpu" and self.mmap:
            return None  # mapped pages stay on disk until touched
        if fit.fits is False and fit.available is not None:
            return lf.out_of_memory_precheck(self.size, fit.available, fit.device)
        return None

    def _try_spawn(self) -> None:
        global _current
        if not _LOAD_LOCK.acquire(blocking=False):
            other = _current
            if other is None or other is self:
                return
            other.poll()  # collects a finished child nobody polled, releasing the lock
            if not _LOAD_LOCK.acquire(blocking=False):
                return
        _current = self
        try:
            self._spawn()
        except Exception as err:  # noqa: BLE001 - never keep the lock for a child that isn't
            why = getattr(err, "strerror", None) or err
            self._finish(LoadFailure(lf.CRASHED, str(err), "The load process could not be "
                                     f"started: {why}.", [], type(err).__name__))

    def _spawn(self) -> None:
        unsafe = not self.policy.weights_only
        request = {"path": self.path, "format": self.format, "size": self.size,
                   "weights_only": self.policy.weights_only,
                   "allow_globals": list(self.policy.allow_globals),
                   "map_location": self.policy.map_location, "mmap": self.mmap,
                   "unsafe": unsafe, "memory_limit": self.memory_limit}
        if self.save_to is not None:
            self._partial_fd, self._partial = load_output.make_partial(self.save_to)
            request["save_to"] = self._partial
        self._cwd = tempfile.mkdtemp(prefix="pttui-load-")
        self._err = tempfile.TemporaryFile()
        self._proc = load_sandbox.spawn(
            [*load_sandbox.child_command(), json.dumps(request)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._err, cwd=self._cwd,
            env=load_sandbox.child_env(unsafe), start_new_session=True, close_fds=True)
        self.pid = self._proc.pid
        self.state = "running"
        self._t0 = time.monotonic()
        _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"pttui-load-{self.pid}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        self._out = self._proc.stdout.read()

    def _kill(self) -> None:
        """SIGKILL the whole group (grandchildren too), then reap the child."""
        assert self._proc is not None
        load_sandbox.kill_group(self._proc.pid)
        self._proc.wait()

    def _collect(self) -> None:
        assert self._proc is not None
        # the exited, unreaped leader still pins the group id, so this kills no stranger
        load_sandbox.kill_group(self._proc.pid)
        rc = self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        try:
            report = json.loads(self._out.decode("utf-8")) if rc == 0 else None
        except ValueError:
            report = None
        if not isinstance(report, dict):
            self._finish(lf.crashed(rc, self._stderr_tail(), killed_by_us=False))
        elif report.get("ok"):
            if self.mmap and self.sniffed.compressed:
                report.setdefault("warnings", []).insert(0, (
                    f"mmap was on, but {self.sniffed.compressed} zip record(s) are stored "
                    "compressed: tensor values may be garbage; load again without mmap"))
            self._finish(self._publish(report), report)
        else:
            failure = lf.classify(report.get("error") or {}, fmt=self.format, path=self.path,
                                  not_checkpoint=self.sniffed.not_checkpoint,
                                  damage=self.sniffed.damage,
                                  extra=report.get("extra"), policy=self._effective(report),
                                  compressed=self.sniffed.compressed)
            self._finish(failure, report)

    def _publish(self, report: dict[str, Any]) -> LoadFailure | None:
        """Move the child's tensor file into place; a failure if it cannot be trusted."""
        if self.save_to is None or self._partial is None:
            return None
        saved = report.get("saved") or {}
        try:
            load_output.publish(self._partial, self._partial_fd, self.save_to, saved,
                                self.overwrite)
        except (ReadError, OSError) as err:
            return lf.save_failed(str(err), type(err).__name__, self.save_to)
        self._partial = None
        report["saved"] = {"path": self.save_to, **saved}
        return None

    def _effective(self, report: dict[str, Any]) -> dict[str, Any]:
        return {**self.policy.to_json(), "mmap": self.mmap, **report.get("effective", {})}

    def _stderr_tail(self, limit: int = 4000) -> str:
        if self._err is None:
            return ""
        self._err.seek(0, os.SEEK_END)
        self._err.seek(max(0, self._err.tell() - limit))
        return self._err.read().decode("utf-8", "replace")

    def _finish(self, failure: LoadFailure | None, report: dict[str, Any] | None = None
                ) -> None:
        global _current
        report = report or {}
        self.result = LoadResult(
            ok=failure is None, path=self.path, format=self.format,
            policy=self._effective(report),
            summary=report.get("summary"), failure=failure,
            seconds=time.monotonic() - self._t0 if self._t0 else 0.0,
            load_seconds=report.get("load_seconds"), peak_rss=report.get("peak_rss"),
            warnings=list(report.get("warnings") or []),
            saved=report.get("saved") if failure is None else None)
        self.state = "done"
        self._cleanup()
        if _current is self:
            _current = None
            _LOAD_LOCK.release()

    def _cleanup(self) -> None:
        _live.discard(self)
        if self._reader is not None:
            self._reader.join(timeout=1)  # the group is dead, so its stdout is at EOF
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            # a process that left our group may still hold stdout: then the reader keeps it
            if self._proc.stdout is not None and not (self._reader and self._reader.is_alive()):
                self._proc.stdout.close()
        if self._err is not None:
            self._err.close()
            self._err = None
        if self._cwd is not None:
            shutil.rmtree(self._cwd, ignore_errors=True)
            self._cwd = None
        # a failed or cancelled load saves nothing (after a publish: only the lock goes)
        partials.discard(self._partial, self._partial_fd)
        self._partial = self._partial_fd = None


def attempt_load(path: str | os.PathLike[str], policy: LoadPolicy | None = None, *,
                 consent: bool = False, force: bool = False,
                 cancel: threading.Event | None = None, timeout: float | None = None,
                 memory_limit: int | None = None, save_to: str | None = None,
                 overwrite: bool = False) -> LoadResult:
    """Load ``path`` in a child process and wait; ``cancel.set()`` stops it from any thread.

    ``consent=True`` is required with ``weights_only=False`` (ValueError otherwise);
    ``force=True`` skips the memory pre-check; ``save_to`` writes the loaded tensors
    to a ``.safetensors`` file. Missing or unreadable files and unusable
    destinations raise ReadError; every other outcome is a :class:`LoadResult`.
    """
    attempt = LoadAttempt(path, policy, consent=consent, force=force, timeout=timeout,
                          memory_limit=memory_limit, save_to=save_to, overwrite=overwrite)
    if cancel is not None and cancel.is_set():
        return attempt.cancel()
    try:
        attempt.start()
        while (result := attempt.poll()) is None:
            if cancel is not None and cancel.wait(_POLL_S):
                return attempt.cancel()
            if cancel is None:
                time.sleep(_POLL_S)
        return result
    except BaseException:
        attempt.cancel()  # Ctrl-C or an error here must not leave the child running
        raise


def _check_readable(path: str) -> int:
    if os.path.isdir(path):
        hint = (" (a torch.distributed.checkpoint folder: use torch.distributed.checkpoint"
                ".load)" if os.path.isfile(os.path.join(path, ".metadata")) else "")
        raise ReadError(f"{path}: is a folder; torch.load needs a file{hint}")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a device, pipe or socket: opening one can block;
            return 0  # the sniff names what it is, and the load is refused as no checkpoint
        with open(path, "rb"):
            return st.st_size
    except OSError as err:
        raise ReadError.opening(path, err) from None


@atexit.register
def _kill_live_children() -> None:
    for attempt in list(_live):
        attempt.cancel()
