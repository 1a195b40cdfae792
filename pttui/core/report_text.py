"""A comparison as plain lines: the CLI prints them, the shell and the TUI style them."""

from __future__ import annotations

from pttui.core import humanize as hz
from pttui.core.compare import Report, group_keys


def verdict(report: Report) -> str:
    if report.strict_ok:
        return "strict load: OK — load_state_dict(strict=True) will succeed"
    if report.ok_with_accepted:
        tied = set(report.tied_missing)
        fresh = [k for k in report.accepted_missing if k not in tied]
        if not fresh:
            return (f"loads with strict=False: {len(tied)} tied " + (
                "aliases load through their twins" if len(tied) != 1
                else "alias loads through its twin"))
        return (f"loads with strict=False: {len(fresh)} accepted missing "
                f"key{'s stay' if len(fresh) != 1 else ' stays'} at the model's initialisation")
    parts = []
    if report.missing:
        parts.append(f"{len(report.missing)} missing")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} unexpected")
    if report.shape_mismatch:
        parts.append(f"{len(report.shape_mismatch)} shape mismatches")
    return "strict load: FAILS (" + ", ".join(parts) + ")"


def coverage(report: Report) -> str:
    (k, kt), (p, pt) = report.coverage_keys, report.coverage_params
    pct = f"{p / pt:.1%}" if pt else "n/a"
    return f"coverage: {k}/{kt} keys, {hz.count(p)}/{hz.count(pt)} elements ({pct})"


def problem_lines(report: Report, limit: int = 12) -> list[str]:
    out: list[str] = []
    for title, keys in (("missing (in the model, not in the file)", report.missing),
                        ("unexpected (in the file, not in the model)", report.unexpected)):
        if keys:
            out.append(f"{title}: {len(keys)}")
            out.extend(f"    {g}" for g in group_keys(list(keys), limit=limit))
    if report.shape_mismatch:
        out.append(f"shape mismatches: {len(report.shape_mismatch)}")
        for s in report.shape_mismatch[:limit]:
            out.append(f"    {s.key}: file {hz.shape(s.checkpoint_shape)}, model "
                       f"{hz.shape(s.model_shape)}")
        if len(report.shape_mismatch) > limit:
            out.append(f"    … and {len(report.shape_mismatch) - limit} more")
    if report.dtype_diff:
        kinds = sorted({f"{d.checkpoint_dtype} -> {d.model_dtype}" for d in report.dtype_diff})
        out.append(f"dtype differences (load_state_dict casts them): {len(report.dtype_diff)} "
                   f"keys, {', '.join(kinds[:4])}")
    return out


def suggestion_lines(suggestions, limit: int = 8) -> list[str]:
    out = []
    for i, s in enumerate(suggestions[:limit], 1):
        safe = "" if s.safe else "  (review first)"
        out.append(f"  {i}. {s.title}: {s.effect} [{s.confidence}]{safe}")
        if s.why:
            out.append(f"       {s.why}")
    return out
