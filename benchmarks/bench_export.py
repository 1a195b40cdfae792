"""``pttui fix --recipe`` (a rename) on the 2.5 GB file, to .pt and .safetensors, against ``cp``.

    python benchmarks/bench_export.py [--runs 5] [--workdir DIR] [--transpose]

``--transpose``: the recipe also transposes every 2-D weight (a value op: each is
computed anew, so nothing is a byte copy), against a target with those shapes
(issue 15: at most 1.5x ``cp``).

The recipe strips the DDP ``module.`` prefix; the target is ``ref:big_target.pt``
(the same model as meta tensors), so the whole process is: read both files' metadata,
compare, write, fsync, verify, rename. Baselines in the same rounds: ``cp`` of the
file, ``cp`` then ``sync`` of the copy (cp does not fsync; pttui must, to be atomic
and durable), ``dd oflag=direct`` (the disk's own write speed: the floor for any copy
that must reach the disk), and what a user would write by hand: ``torch.load(mmap=True)``, rename,
``torch.save`` / ``safetensors.torch.save_file``.

Peak anonymous memory = RssAnon summed over the process and its children (pttui reads
and exports in a forked child; resident memory that is not file-backed: the page
cache pages of a mapped checkpoint do not count), polled every 2 ms.

Targets (issue 7): wall time at most 1.5x ``cp``; peak anonymous memory at most the
largest tensor plus 300 MiB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from common import (MIB, PY, Series, Workdir, base_args, fmt_mib, fmt_s, header, measure,
                    pttui_cmd, table, verdict)
from make_inputs import HIDDEN, VOCAB, ensure

LARGEST = VOCAB * HIDDEN * 2  # the embedding / lm_head, bf16
_BY_HAND = ("import sys, torch\n"
            "sd = torch.load(sys.argv[1], mmap=True, weights_only=True)\n"
            "sd = {k.removeprefix('module.'): v for k, v in sd.items()}\n"
            "if sys.argv[2].endswith('.safetensors'):\n"
            "    from safetensors.torch import save_file; save_file(sd, sys.argv[2])\n"
            "else:\n"
            "    torch.save(sd, sys.argv[2])\n")


def _rm(*paths: Path):
    """Remove a series' outputs, then flush every dirty page before it is timed.

    Without the sync, a command pays for the write-back its predecessor left behind
    (``cp`` and ``torch.save`` return with 2.5 GB still dirty): measured that way,
    pttui's fsync waited for the previous ``cp``'s data and the ratio moved 1.4-1.8x
    from run to run. Each command now starts from a clean cache and pays its own writes.
    """
    def go() -> None:
        for p in paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        os.sync()
    return go


def _two_d(wd: Path) -> str:
    """A regex naming every 2-D weight of the model (as the recipe sees them)."""
    import re

    import torch

    sd = torch.load(wd / "big_target.pt", map_location="meta", weights_only=True)
    return "^(?:" + "|".join(re.escape(k) for k, v in sd.items() if v.dim() == 2) + ")$"


def _transposed_target(wd: Path) -> Path:
    """big_target.pt (meta tensors) with its 2-D weights transposed."""
    import torch

    out = wd / "big_target_transposed.pt"
    sd = torch.load(wd / "big_target.pt", map_location="meta", weights_only=True)
    torch.save({k: v.t() if v.dim() == 2 else v for k, v in sd.items()}, out)
    return out


def main() -> None:
    p = base_args(__doc__.split("\n")[0])
    p.add_argument("--no-torch", action="store_true", help="skip the by-hand torch baselines")
    p.add_argument("--transpose", action="store_true",
                   help="also transpose every 2-D weight (a value op)")
    args = p.parse_args()
    header("pttui fix (export after a rename" + (" and a transpose of every 2-D weight)"
                                                  if args.transpose else ")"), args.runs)
    with Workdir(args.workdir) as wd:
        src = ensure(wd, ["big"])["big"]
        recipe = wd / "strip_module.json"
        target = f"ref:{wd / 'big_target.pt'}"
        ops = [{"op": "select_container", "path": []},
               {"op": "strip_prefix", "prefix": "module."}]
        if args.transpose:
            target = f"ref:{_transposed_target(wd)}"
            ops.append({"op": "transpose", "pattern": _two_d(wd), "kind": "regex"})
        recipe.write_text(json.dumps({"pttui_recipe": 2 if args.transpose else 1, "ops": ops}))
        series = []
        for ext in ("pt", "safetensors"):
            out = wd / f"exported.{ext}"
            series.append(Series(f"pttui fix -> .{ext}", pttui_cmd() + [
                "fix", str(src), "--model", target, "--recipe", str(recipe), "-o", str(out),
                "--force"], anon=True, before=_rm(out, Path(f"{out}.recipe.json"))))
        cp_out = wd / "copied.pt"
        series.append(Series("cp", ["cp", str(src), str(cp_out)], before=_rm(cp_out)))
        series.append(Series("cp + sync", ["sh", "-c", f"cp '{src}' '{cp_out}' && sync '{cp_out}'"],
                             before=_rm(cp_out)))
        series.append(Series("dd oflag=direct", ["dd", f"if={src}", f"of={cp_out}", "bs=16M",
                                                 "oflag=direct", "status=none"],
                             before=_rm(cp_out)))
        if not args.no_torch:
            for ext in ("pt", "safetensors"):
                out = wd / f"by_hand.{ext}"
                series.append(Series(f"by hand: torch.load(mmap) + save -> .{ext}",
                                     [PY, "-c", _BY_HAND, str(src), str(out)], anon=True,
                                     before=_rm(out)))
        try:
            measure(series, args.runs)
        finally:
            for f in ("exported.pt", "exported.safetensors", "copied.pt", "by_hand.pt",
                      "by_hand.safetensors"):
                _rm(wd / f, wd / f"{f}.recipe.json")()
        by = {s.label: s for s in series}
        cp, cps = by["cp"], by["cp + sync"]
        # the fastest copy that has reached the disk: what a durable export cannot beat
        floor = min(cps.wall, by["dd oflag=direct"].wall)
        size = os.path.getsize(src)
        print(f"input: {src.name}, {size / 1e9:.2f} GB, largest tensor {fmt_mib(LARGEST)}; "
              f"cp: {fmt_s(cp.wall)} ({size / cp.wall / 1e9:.2f} GB/s), cp + sync: "
              f"{fmt_s(cps.wall)}\n")
        rows, verdicts = [], []
        for s in series:
            if s.label.startswith("cp"):
                continue
            rows.append([s.label, fmt_s(s.wall), f"{s.wall / cp.wall:.2f}x",
                         f"{s.wall / cps.wall:.2f}x", fmt_mib(s.peak_anon), fmt_mib(s.maxrss)])
            if s.label.startswith("pttui"):
                verdicts.append([f"{s.label}: <= 1.5x cp", f"{s.wall / cp.wall:.2f}x",
                                 verdict(s.wall <= 1.5 * cp.wall)])
                verdicts.append([f"{s.label}: vs the durable floor", f"{s.wall / floor:.2f}x",
                                 "-"])
                limit = LARGEST + 300 * MIB
                verdicts.append([f"{s.label}: peak anon <= largest + 300 MiB "
                                 f"({fmt_mib(limit)})", fmt_mib(s.peak_anon),
                                 verdict(s.peak_anon <= limit)])
        print(table(["command", "wall", "vs cp", "vs cp + sync", "peak anon", "max RSS"],
                    rows))
        verdicts.insert(0, ["durable floor (fastest of cp + sync, dd oflag=direct): "
                            "<= 1.5x cp? (if not, the target is out of reach with an fsync)",
                            f"{floor / cp.wall:.2f}x", verdict(floor <= 1.5 * cp.wall)])
        print("\n### targets\n")
        print(table(["target", "measured", "met"], verdicts))


if __name__ == "__main__":
    main()
