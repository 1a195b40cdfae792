"""``pttui devices --for FILE``: the fit plan, in-process and as a whole command.

    python benchmarks/bench_devices.py [--runs 5] [--workdir DIR] [--only big,moe,keys100k]

In-process: the plan alone (stored and bfloat16) from TensorMetas already read, on a
snapshot of this machine and on an eight-GPU budget that splits the model, plus a flat
file of 100,000 tensors (accelerate's own loop is quadratic there). Whole processes,
interleaved: ``pttui devices --for FILE --json`` beside ``pttui inspect --json FILE``
(the read it builds on) and ``python -c "import torch"`` (devices reports torch's
versions, so it imports torch).
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import (PY, Series, Workdir, base_args, fmt_mib, fmt_s, header, measure,
                    median_time, pttui_cmd, table)
from make_inputs import ensure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INPUTS = ("big", "moe", "keys100k")


def _flat(n: int = 100_000):
    from pttui.core.base.meta import StorageRef, TensorMeta

    return [TensorMeta(f"w{i}", (64 + i % 97,), "float32", "cpu",
                       StorageRef(f"data/{i}", "float32", 64 + i % 97, "cpu"))
            for i in range(n)]


def main() -> None:
    p = base_args(__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(INPUTS))
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n]
    header("pttui devices --for", args.runs)
    from pttui.core.device import devices
    from pttui.core.device import plan as fp
    from pttui.core.read import open_checkpoint

    snap = devices.snapshot()
    with Workdir(args.workdir) as wd:
        paths = ensure(wd, names)
        inputs = {n: list(open_checkpoint(str(paths[n])).tensors.values()) for n in names}
        inputs["flat 100,000"] = _flat()
        rows = []
        for name, metas in inputs.items():
            t_here, _ = median_time(lambda m=metas: fp.both(m, snap), args.runs)
            lay = fp.layout(metas)
            total = lay.size("")
            eight = {i: int(total / 10) for i in range(8)} | {"cpu": int(total)}
            t_eight, pl = median_time(lambda: fp.plan(lay, None, max_memory=eight), args.runs)
            rows.append([name, f"{len(metas):,}", fmt_s(t_here), fmt_s(t_eight),
                         pl.verdict[:60]])
        print("### the plan in-process (median)\n")
        print(table(["input", "keys", "both plans, this machine", "8 GPUs (split)",
                     "8-GPU verdict"], rows))
        series = [Series("python -c 'import torch'", [PY, "-c", "import torch"])]
        for n in names:
            series.append(Series(f"inspect {n}", pttui_cmd() + ["inspect", "--json",
                                                                str(paths[n])]))
            series.append(Series(f"devices --for {n}", pttui_cmd() + [
                "devices", "--for", str(paths[n]), "--json"]))
        ss = {s.label: s for s in measure(series, args.runs)}
        torch_s = ss["python -c 'import torch'"]
        rows = [[n, fmt_s(ss[f"inspect {n}"].wall), fmt_s(ss[f"devices --for {n}"].wall),
                 f"{ss[f'devices --for {n}'].wall / torch_s.wall:.2f}x",
                 fmt_mib(ss[f"devices --for {n}"].maxrss)] for n in names]
        print(f"\n### whole processes (median); import torch: {fmt_s(torch_s.wall)}\n")
        print(table(["input", "inspect --json", "devices --for --json",
                     "vs import torch", "peak RSS"], rows))


if __name__ == "__main__":
    main()
