"""Start-up: ``pttui --help`` and the first paint of ``pttui DIR``, against ``import torch``.

    python benchmarks/bench_startup.py [--runs 5] [--workdir DIR] [--folder DIR ...]

First paint = the time from starting ``pttui DIR`` in a real terminal (a detached
tmux session on a private socket, 120x40) until the file list shows a checkpoint's
name (``tmux capture-pane`` polled every 10 ms). Folders: the benchmark inputs (a
2.5 GB file, the 50,000- and 100,000-key files, a sharded set), the repository's
``sample_checkpoints`` (18 small files of every format), and any ``--folder``.

Target (issue 7): first paint at most a quarter of ``python -c "import torch"``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import (ENV, HERE, PY, Series, Workdir, base_args, fmt_s, header, measure,
                    pttui_cmd, run_once, table, verdict)
from make_inputs import ensure

SOCKET = f"pttui-bench-{os.getpid()}"


def _tmux(*args: str, check: bool = True) -> str:
    r = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, env=ENV)
    if check and r.returncode:
        raise SystemExit(f"tmux {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def first_paint(folder: Path, needle: str, timeout: float = 60.0) -> float:
    """Seconds until ``needle`` is on the screen of ``pttui folder`` in tmux."""
    name = f"b{time.monotonic_ns()}"
    cmd = " ".join(shlex.quote(a) for a in pttui_cmd() + [str(folder)])
    t0 = time.perf_counter()
    _tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd)
    try:
        while time.perf_counter() - t0 < timeout:
            if needle in _tmux("capture-pane", "-p", "-t", name, check=False):
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise SystemExit(f"{needle!r} never appeared on the screen of pttui {folder}:\n"
                         + _tmux("capture-pane", "-p", "-t", name, check=False))
    finally:
        _tmux("kill-session", "-t", name, check=False)


def main() -> None:
    p = base_args(__doc__.split("\n")[0])
    p.add_argument("--folder", action="append", default=[],
                   help="also measure first paint in this folder (repeatable)")
    p.add_argument("--needle", action="append", default=[],
                   help="the file name to wait for in each --folder (default: its first "
                        "*.pt / *.safetensors)")
    args = p.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed to measure the first paint in a real terminal")
    header("start-up", args.runs)
    with Workdir(args.workdir) as wd:
        ensure(wd, ["big", "moe", "keys100k", "sharded"])
        py, helps = measure([Series("python -c pass", [PY, "-c", "pass"]),
                             Series("pttui --help", pttui_cmd() + ["--help"])], args.runs)
        folders = [(wd, "moe.pt", "benchmark inputs (2.5 GB, 50k and 100k keys, sharded)")]
        samples = HERE.parent / "sample_checkpoints"
        if samples.is_dir():
            folders.append((samples, "tiny_vit.safetensors", "sample_checkpoints (18 files)"))
        for i, f in enumerate(args.folder):
            needle = args.needle[i] if i < len(args.needle) else next(
                (n for n in sorted(os.listdir(f)) if n.endswith((".pt", ".safetensors"))), "")
            folders.append((Path(f), needle, f))
        # `import torch` and the first paints in the same rounds: this machine's speed
        # drifts by a third over minutes, and a ratio of figures taken minutes apart
        # measured the drift as much as pttui.
        torch_s = Series("python -c 'import torch'", [PY, "-c", "import torch"])
        paints: list[list[float]] = [[] for _ in folders]
        # a session that outlives the measured ones, so the tmux server stays up
        _tmux("new-session", "-d", "-s", "keep", "-x", "120", "-y", "40", "sleep 100000")
        try:
            # warm-up: bytecode, page cache, tmux server
            run_once(torch_s.cmd)
            for folder, needle, _label in folders:
                first_paint(folder, needle)
            for _ in range(args.runs):
                torch_s.runs.append(run_once(torch_s.cmd))
                for times, (folder, needle, _label) in zip(paints, folders):
                    times.append(first_paint(folder, needle))
        finally:
            _tmux("kill-server", check=False)
        rows = [["pttui --help", fmt_s(helps.wall), fmt_s(torch_s.wall),
                 f"{helps.wall / torch_s.wall:.2f}", f"python -c pass: {fmt_s(py.wall)}"]]
        verdicts = []
        torch_runs = [r.wall for r in torch_s.runs]
        for times, (_folder, _needle, label) in zip(paints, folders):
            t = statistics.median(times)
            per_round = statistics.median(p / w for p, w in zip(times, torch_runs))
            rows.append([f"first paint: {label}", fmt_s(t), fmt_s(torch_s.wall),
                         f"{t / torch_s.wall:.2f}",
                         f"{min(times):.2f}-{max(times):.2f} s; per round {per_round:.2f}"])
            verdicts.append([f"first paint <= 1/4 import torch ({label})",
                             f"{t / torch_s.wall:.2f}", verdict(t <= torch_s.wall / 4)])
        print(table(["what", "pttui", "import torch", "ratio", "note"], rows))
        print("\n### targets\n")
        print(table(["target", "measured (ratio)", "met"], verdicts))


if __name__ == "__main__":
    main()
