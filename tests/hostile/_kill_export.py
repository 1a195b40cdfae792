"""Kill exports at random moments: ``python _kill_export.py SRC OUTDIR TRIALS SEED [pile]``.

Imports torch once, then forks one child per trial that exports SRC to
OUTDIR/outN.{pt,safetensors} and SIGKILLs it after a random delay drawn from 0 to
2x the time a whole export takes (so some trials finish). Prints one JSON list:
per trial the output name, the delay and whether the child was killed.

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


def _export_in_child(ckpt, out: str) -> int:
    from pttui.core.export import export

    pid = os.fork()
    if pid == 0:  # the child: export, then leave without running any cleanup of ours
        try:
            export(ckpt, dict(ckpt.tensors), ckpt.tensors, out)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return pid


def main() -> None:
    src, outdir, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import torch  # noqa: F401 - imported once, before forking

    if sys.argv[5:] == ["pile"]:
        from pttui.core import partials

        partials.sweep_note = lambda folder: []

    from pttui.core.reader import open_checkpoint

    ckpt = open_checkpoint(src)
    times = []
    for _ in range(3):  # the first runs on a cold page cache: time the warm ones too
        t0 = time.monotonic()
        _, first = os.waitpid(_export_in_child(ckpt, os.path.join(outdir, "timing.pt")), 0)
        times.append(time.monotonic() - t0)
        os.unlink(os.path.join(outdir, "timing.pt"))
    whole = min(times)
    rng = random.Random(seed)
    rows = []
    for i in range(trials):
        out = os.path.join(outdir, f"out{i}.{'pt' if i % 2 == 0 else 'safetensors'}")
        delay = rng.uniform(0, 2.0 * whole)
        pid = _export_in_child(ckpt, out)
        time.sleep(delay)
        killed = True
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            killed = False
        _, status = os.waitpid(pid, 0)
        killed = killed and os.WIFSIGNALED(status)
        rows.append({"out": os.path.basename(out), "delay": round(delay, 4), "killed": killed,
                     "exit": None if killed else os.waitstatus_to_exitcode(status)})
    print(json.dumps({"export_seconds": whole, "first_exit": os.waitstatus_to_exitcode(first),
                      "trials": rows}))


if __name__ == "__main__":
    main()
