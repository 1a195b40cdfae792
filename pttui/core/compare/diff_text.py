"""Two checkpoints compared, in words: the lines ``pttui diff`` prints and the shell's
``diff`` shows (one rendering, so the two say the same)."""

from __future__ import annotations

from pttui.core.compare.strict import group_keys
from pttui.core.compare.twofiles import DiffReport


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
