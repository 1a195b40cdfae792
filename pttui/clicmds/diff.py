"""``pttui diff A B``: what differs between two checkpoints (keys, shapes, dtypes, values).

Exit 0 when nothing that was compared differs, 1 when something does, 2 when a
file cannot be read. Nothing in either file is executed.
"""

from __future__ import annotations

import argparse
import json
import sys

from pttui.core.compare.compare import group_keys
from pttui.core.compare.diff import DiffReport, diff
from pttui.core.read.reader import open_checkpoint


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


def _group(title: str, rows: list[str], limit: int, count: int | None = None) -> list[str]:
    """``title (count):`` then at most ``limit`` rows; ``count`` when rows are groups."""
    if not rows:
        return []
    shown = rows if limit <= 0 else rows[:limit]
    out = [f"{title} ({len(rows) if count is None else count}):"] + [f"  {r}" for r in shown]
    if len(shown) < len(rows):
        out.append(f"  ... and {len(rows) - len(shown)} more lines (--limit 0 lists all)")
    return out


def _fmt(v: float | None) -> str:
    return "not numeric (bytes differ)" if v is None else f"{v:.6g}"


def _where(ckpt, flag: str) -> str:  # noqa: ANN001 - a Checkpoint
    """Which container was compared, when the file holds several."""
    if len(ckpt.containers) < 2:
        return ""
    name = ".".join(ckpt.selected or ()) or "(root)"
    return f"; container {name}, one of {len(ckpt.containers)}: {flag} picks another"


def render(r: DiffReport, n_a: int, n_b: int, limit: int = 20, where_a: str = "",
           where_b: str = "") -> list[str]:
    lines = [f"A: {r.a}  ({n_a} tensors{where_a})", f"B: {r.b}  ({n_b} tensors{where_b})"]
    parts = [f"{r.common} keys in both", f"{len(r.only_in_a)} only in A",
             f"{len(r.only_in_b)} only in B", f"{len(r.shape_diff)} shape differences",
             f"{len(r.dtype_diff)} dtype differences"]
    if r.values:
        parts.append(f"values: {r.identical} of {r.compared} identical")
    lines.append(" · ".join(parts))
    lines += _group("only in A", group_keys(r.only_in_a), limit, len(r.only_in_a))
    lines += _group("only in B", group_keys(r.only_in_b), limit, len(r.only_in_b))
    lines += _group("shape differs (A vs B)",
                    [f"{k}  {list(sa)} vs {list(sb)}" for k, sa, sb in r.shape_diff], limit)
    lines += _group("dtype differs (A vs B)",
                    [f"{k}  {da} vs {db}" for k, da, db in r.dtype_diff], limit)
    if r.values:
        worst = sorted(r.max_abs_diff.items(),
                       key=lambda kv: -1.0 if kv[1] is None else -kv[1])
        lines += _group("values differ, largest first (max |A-B|)",
                        [f"{k}  {_fmt(v)}" for k, v in worst], limit)
        lines += _group("values not compared", [f"{k}: {why}" for k, why in
                                                r.unreadable.items()], limit)
    what = "keys, shapes, dtypes" + (" and values" if r.values else "")
    if r.values and r.unreadable:  # never "identical in values" for values not read
        what += f" ({len(r.unreadable)} not compared: unreadable)"
    lines.append(f"result: identical in {what}" if r.same else "result: the checkpoints differ")
    return lines
