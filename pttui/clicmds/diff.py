"""``pttui diff A B``: what differs between two checkpoints (keys, shapes, dtypes, values).

Exit 0 when nothing that was compared differs, 1 when something does, 2 when a
file cannot be read. Nothing in either file is executed.
"""

from __future__ import annotations

import argparse
import json
import sys

from pttui.core.compare import diff
from pttui.core.compare import render
from pttui.core.read import open_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="the first checkpoint (file, *.index.json or DCP folder)")
    p.add_argument("b", help="the second checkpoint")
    p.add_argument("--values", action="store_true",
                   help="also compare tensor values (reads both files, one tensor at a time)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--select-a", metavar="PATH", default=None,
                   help="the container of A to compare, e.g. state_dict ('' = the root, when it is one)")
    p.add_argument("--select-b", metavar="PATH", default=None,
                   help="the container of B to compare")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="list at most N keys per group (0 = all; default 20)")


def _select(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(p for p in text.split(".") if p)


def run(args: argparse.Namespace) -> int:
    a = open_checkpoint(args.a, _select(args.select_a))
    b = open_checkpoint(args.b, _select(args.select_b))
    report = diff(a, b, values=args.values)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), separators=(",", ":")) + "\n")
    else:
        sys.stdout.write("\n".join(render(report, len(a.tensors), len(b.tensors),
                                          args.limit, _where(a, "--select-a"),
                                          _where(b, "--select-b"))) + "\n")
    return 0 if report.same else 1


def _where(ckpt, flag: str) -> str:  # noqa: ANN001 - a Checkpoint
    """Which container was compared, when the file holds several."""
    if len(ckpt.containers) < 2:
        return ""
    name = ".".join(ckpt.selected or ()) or "(root)"
    return f"; container {name}, one of {len(ckpt.containers)}: {flag} picks another"
