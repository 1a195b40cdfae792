"""Kill exports at chosen moments: ``python _kill_export.py SRC OUTDIR TRIALS SEED [pile]``.

Imports torch once, then forks one child per trial that exports SRC to
OUTDIR/outN.{pt,safetensors} and SIGKILLs it at a moment picked by the export's own
progress, not by the clock, so that every kind of moment is hit on a fast machine
and on a loaded one alike:

* ``start``: 0-2 ms after the fork (before or just as the partial file appears);
* ``write``: once the partial file holds a random fraction of the output's bytes;
* ``end``: once the output has its final name (the rename is done);
* ``none``: never (the export is left to finish).

Prints one JSON object: the time a whole export takes, and per trial the output
name, the kind, the fraction aimed at, the delay from fork to kill and whether the
child was killed.

Each export first removes the partial files earlier killed exports left in its
folder; with ``pile`` the children skip that, so every kill's leftover stays for
the caller to check and to clean with one later export.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

# Of every 10 trials: how many of each kind.
KINDS = ["start"] * 2 + ["write"] * 6 + ["end"] + ["none"]
POLL_S = 0.0005


def _export_in_child(ckpt, out: str) -> int:
    from pttui.core.export.export import export

    pid = os.fork()
    if pid == 0:  # the child: export, then leave without running any cleanup of ours
        try:
            export(ckpt, dict(ckpt.tensors), ckpt.tensors, out)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return pid


def _partial_size(outdir: str, out: str) -> int | None:
    prefix = f".{os.path.basename(out)}.pttui-partial-"
    for entry in os.scandir(outdir):
        if entry.name.startswith(prefix):
            try:
                return entry.stat().st_size
            except FileNotFoundError:
                return None
    return None


def _exited(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def _wait_for(kind: str, pid: int, outdir: str, out: str, want: int,
              start_delay: float) -> int | None:
    """Return once the moment of ``kind`` came (None) or the child exited (its status)."""
    if kind == "start":
        time.sleep(start_delay)
        return None
    while True:
        status = _exited(pid)
        if status is not None:
            return status
        if kind == "end" and os.path.exists(out):
            return None
        if kind == "write" and (_partial_size(outdir, out) or 0) >= want:
            return None
        time.sleep(POLL_S)


def main() -> None:
    src, outdir, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import torch  # noqa: F401 - imported once, before forking

    if sys.argv[5:] == ["pile"]:
        from pttui.core.base import partials

        partials.sweep_note = lambda folder: []

    from pttui.core.read.reader import open_checkpoint

    ckpt = open_checkpoint(src)
    times, sizes = [], {}
    for ext in ("pt", "safetensors", "pt"):  # the first runs on a cold page cache
        timing = os.path.join(outdir, f"timing.{ext}")
        t0 = time.monotonic()
        _, first = os.waitpid(_export_in_child(ckpt, timing), 0)
        times.append(time.monotonic() - t0)
        sizes[ext] = os.path.getsize(timing)
        os.unlink(timing)
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(trials)]
    rng.shuffle(kinds)
    rows = []
    for i, kind in enumerate(kinds):
        ext = "pt" if i % 2 == 0 else "safetensors"
        out = os.path.join(outdir, f"out{i}.{ext}")
        fraction, start_delay = rng.uniform(0.02, 0.98), rng.uniform(0, 0.002)
        t0 = time.monotonic()
        pid = _export_in_child(ckpt, out)
        status = _wait_for(kind, pid, outdir, out, int(fraction * sizes[ext]), start_delay)
        delay = time.monotonic() - t0
        killed = False
        if status is None and kind != "none":
            os.kill(pid, signal.SIGKILL)
        if status is None:
            _, status = os.waitpid(pid, 0)
            killed = os.WIFSIGNALED(status)
        rows.append({"out": os.path.basename(out), "kind": kind, "fraction": round(fraction, 3),
                     "delay": round(delay, 4), "killed": killed,
                     "exit": None if killed else os.waitstatus_to_exitcode(status)})
    print(json.dumps({"export_seconds": min(times), "first_exit": os.waitstatus_to_exitcode(first),
                      "trials": rows}))


if __name__ == "__main__":
    main()
