"""Shared helpers for the benchmark scripts: run whole processes, take medians, print tables.

Whole processes, because that is what a user waits for: interpreter start, imports,
the work and exit. Rounds interleave the commands being compared (pttui, then each
baseline, then pttui again...) so a noisy neighbour slows all of them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(sys.executable).parent
MIB = 1 << 20
# Children may write bytecode caches, as an installed pttui (and torch) has them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def pttui_cmd() -> list[str]:
    """The installed ``pttui`` console script (what a user runs), else ``python -m``."""
    exe = BIN / "pttui"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pttui")
    return [found] if found else [PY, "-m", "pttui.cli"]


def base_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=5, help="runs per measurement (median shown)")
    p.add_argument("--workdir", help="keep generated inputs here and reuse them "
                   "(default: a temporary folder, deleted at the end)")
    return p


class Workdir:
    """``--workdir`` if given (kept), else a temporary folder removed on exit."""

    def __init__(self, path: str | None) -> None:
        self.keep = path is not None
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="pttui-bench-"))
        self.path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


# -- measuring one process ----------------------------------------------------------

@dataclass
class Run:
    wall: float  # seconds
    maxrss: int  # bytes, the kernel's high-water mark of resident memory (wait4)
    peak_anon: int = 0  # bytes, the highest RssAnon seen while polling (0: not polled)
    rc: int = 0
    cpu: float = 0.0  # seconds of user + system CPU (robust when the machine is busy)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (pttui's CLI does its work in a forked child)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            with open(f"/proc/{pids[i]}/task/{pids[i]}/children", "rb") as f:
                pids += [int(c) for c in f.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def _poll_anon(pid: int, out: list[int], stop: threading.Event, every: float) -> None:
    """The highest sum of RssAnon over the process tree, polled every ``every`` s."""
    while not stop.is_set():
        total, alive = 0, False
        for p in _tree(pid):
            try:
                with open(f"/proc/{p}/status", "rb") as f:
                    text = f.read()
            except OSError:
                continue
            alive = True
            m = re.search(rb"RssAnon:\s+(\d+) kB", text)
            if m:
                total += int(m.group(1)) * 1024
        if not alive:
            return
        out[0] = max(out[0], total)
        stop.wait(every)


def run_once(cmd: list[str], *, anon: bool = False, env: dict | None = None,
             stdout=subprocess.DEVNULL, check: bool = True, cwd: str | None = None) -> Run:
    """Run ``cmd`` to completion: wall time, max RSS (exact, from wait4) and, with
    ``anon``, peak anonymous memory (RSS minus file-backed pages, polled every 2 ms)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE,
                         env=ENV if env is None else env, cwd=cwd)
    peak = [0]
    stop = threading.Event()
    poller = None
    if anon:
        poller = threading.Thread(target=_poll_anon, args=(p.pid, peak, stop, 0.002),
                                  daemon=True)
        poller.start()
    # Read stderr before reaping, so a chatty child cannot block on a full pipe.
    err = p.stderr.read() if p.stderr else b""
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    if poller is not None:
        poller.join()
    if check and p.returncode != 0:
        raise SystemExit(f"benchmark command failed ({p.returncode}): {' '.join(cmd)}\n"
                         + err.decode(errors="replace")[-2000:])
    return Run(wall, usage.ru_maxrss * 1024, peak[0], p.returncode,
               usage.ru_utime + usage.ru_stime)


@dataclass
class Series:
    """Several runs of one command."""

    label: str
    cmd: list[str]
    anon: bool = False
    before: object = None  # called before each run (e.g. remove an output file)
    runs: list[Run] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def maxrss(self) -> int:
        return int(statistics.median(r.maxrss for r in self.runs))

    @property
    def peak_anon(self) -> int:
        return int(statistics.median(r.peak_anon for r in self.runs))

    @property
    def spread(self) -> str:
        ws = sorted(r.wall for r in self.runs)
        return f"{ws[0]:.3f}-{ws[-1]:.3f}"


def measure(series: list[Series], runs: int, warmup: int = 1) -> list[Series]:
    """Interleaved rounds: each round runs every series once, in order."""
    for _ in range(warmup):
        for s in series:
            if callable(s.before):
                s.before()
            run_once(s.cmd, anon=s.anon)
    for _ in range(runs):
        for s in series:
            if callable(s.before):
                s.before()
            s.runs.append(run_once(s.cmd, anon=s.anon))
    return series


# -- in-process timing ---------------------------------------------------------------

def median_time(fn, runs: int, warmup: int = 1, cpu: bool = False) -> tuple[float, object]:
    """Median seconds of ``fn()`` (wall, or this process's CPU time with ``cpu``)."""
    clock = time.process_time if cpu else time.perf_counter
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(runs):
        t0 = clock()
        result = fn()
        times.append(clock() - t0)
    return statistics.median(times), result


# -- output ------------------------------------------------------------------------

def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def fmt_mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    torch_v = subprocess.run([PY, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True).stdout.strip() or "?"
    return (f"{os.cpu_count()} cores ({cpu}), {mem / (1 << 30):.1f} GiB RAM, "
            f"Python {platform.python_version()}, torch {torch_v}, {platform.system()} "
            f"{platform.release()}")


def header(title: str, runs: int) -> None:
    print(f"## {title}\n")
    print(f"machine: {machine()}")
    print(f"medians of {runs} runs (whole processes unless marked in-process), "
          f"after one warm-up run; inputs in the page cache\n")
