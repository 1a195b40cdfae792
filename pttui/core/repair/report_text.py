"""A comparison as plain lines: the CLI prints them, the shell and the TUI style them."""

from __future__ import annotations

from pttui.core.base import humanize as hz
from pttui.core.compare.strict import Report, group_keys


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


def use_line(analysis) -> str | None:
    """``uses 54% of the checkpoint's parameters; 96 keys dropped``: the file's side of
    coverage (a strict OK reached by dropping most of a file is no repair)."""
    used, total = analysis.file_use
    if not total or analysis.report is None:
        return None
    share = "all" if used >= total else f"{used / total:.0%}" if used * 100 >= total \
        else "under 1%" if used else "none"
    line = f"uses {share} of the checkpoint's parameters ({hz.count(used)}/{hz.count(total)})"
    if analysis.dropped:
        line += f"; {hz.counted(analysis.dropped, 'key')} dropped"
    return line


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


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def danger_lines(ckpt) -> list[str]:
    """For a file whose pickle names code (dangerous globals): what a full load would run,
    the headline first, then each call with its arguments. Empty for every other file."""
    g = ckpt.globals
    if not g.dangerous:
        return []
    head = "DANGER: this file carries code a full torch.load runs (pttui ran none)"
    calls = [f"runs {c}" for c in g.calls]
    named = {c.split("(", 1)[0] for c in g.calls}
    rest = [n for n in g.dangerous if hz.printable(n) not in named]
    if rest:
        calls.append(("imports " if calls else "needs ") + _names([hz.printable(n)
                                                                   for n in rest]))
    return [head] + calls


def stored_device_note(ckpt, problems_only: bool = False) -> str | None:
    """Where the tensors were saved from, when that is a GPU: what a plain ``torch.load``
    does with it here and the line that loads it. Loading it with pttui (which maps it)
    must not hide that the user's own script would fail. ``problems_only``: only when a
    plain load fails here."""
    import sys

    cuda = [str(d) for d in ckpt.devices if str(d).startswith("cuda")]
    if not cuda:
        return None
    where = ", ".join(cuda[:3]) + (" …" if len(cuda) > 3 else "")
    torch = sys.modules.get("torch")  # never imported just for this
    try:  # a worker may be importing it right now: a half-made module knows nothing yet
        cuda_ok, have = torch.cuda.is_available(), torch.cuda.device_count()
    except (AttributeError, ImportError):
        torch = None
    if torch is None:
        return (f"saved from {where}: torch.load needs map_location='cpu' where there is "
                "no GPU")
    if not cuda_ok:
        return (f"saved from {where} and this machine has no CUDA: a plain torch.load fails "
                "here; torch.load(path, map_location='cpu') loads it (`pttui fix` writes "
                "CPU tensors)")
    beyond = [d for d in cuda if d.partition(":")[2].isdigit() and int(d[5:]) >= have]
    if beyond and have:
        return (f"saved from {where}; this machine has {have} GPU{'s' if have != 1 else ''}: "
                f"a plain torch.load fails here; map_location={{'{beyond[0]}': 'cuda:0'}} "
                "(or 'cpu') loads it")
    if problems_only:
        return None
    return (f"saved from {where}: a plain torch.load puts the tensors back there; "
            "map_location='cpu' loads them where there is no GPU")


def load_notes(ckpt) -> list[str]:
    """What ``torch.load`` itself would refuse in this file, one line per fact, each with
    what to do. A strict ``load_state_dict`` can be fine while ``torch.load`` is not."""
    notes: list[str] = []
    g = ckpt.globals
    if ckpt.format == "torchscript":
        notes.append("a TorchScript archive (torch.jit.save): torch.load refuses it; load it "
                     "with torch.jit.load, or `pttui fix` exports its weights as a plain "
                     "state_dict")
    else:
        if g.dangerous:
            notes.append(f"the pickle needs {_names(g.dangerous)}: code a full load would "
                         "import and run with arguments the file chooses; torch.load("
                         "weights_only=True) refuses it and no allow-list makes it safe; "
                         "`pttui fix` exports its tensors without running anything")
        elif g.blocked:
            notes.append(f"torch.load(weights_only=True) refuses this file (blocked: "
                         f"{_names(g.blocked)}, data classes pttui knows are safe to "
                         "allow-list): `pttui fix` exports plain weights, or `pttui load "
                         "--allow NAME` loads it")
    note = stored_device_note(ckpt, problems_only=True)
    if note:
        notes.append(note)
    return notes
