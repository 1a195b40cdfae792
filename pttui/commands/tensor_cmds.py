"""Reading tensor values: ``stats KEY`` (min/max/mean/std, NaN and Inf counts) and
``diff PATH`` (keys, shapes, dtypes, and values on request). Bytes come from
:class:`TensorSource` (mapped, never unpickled), chunk by chunk, in core."""

from __future__ import annotations

import dataclasses
import math

from rich.text import Text

from pttui.commands import render as rd
from pttui.commands.context import readable_path
from pttui.commands.parser import Arg, Opt, Spec, whole_number
from pttui.commands.registry import Call, command
from pttui.core.base import humanize as hz
from pttui.core.base import Container
from pttui.core.guard import open_guarded


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


@command(Spec("stats", "min / max / mean / std and NaN / Inf counts of one tensor's values",
              (Arg("KEY", "key"),), help="Reads the tensor's bytes from the file (mapped, "
              "nothing unpickled), in chunks.", slow=True))
def stats(call: Call) -> object:
    from pttui.core.read import tensor_stats

    key = call.args["key"]
    meta = call.ctx.tensor(key)
    src = call.ctx.source()
    stored = call.session.recipe.select(src).get(meta.key, meta)
    call.report(0, stored.numel, f"stats {key}")
    # progress between chunks is also where Ctrl-C (a cancel) stops a big tensor
    st = tensor_stats(src, stored, progress=lambda done, n: call.report(done, n, f"stats {key}"))
    rows = [("tensor", Text(f"{key}  {hz.shape(stored.shape)} {stored.dtype}")),
            ("elements", f"{st.numel:,}")]
    if st.mean is not None:
        rows += [("min", _num(st.min)), ("max", _num(st.max)), ("mean", _num(st.mean)),
                 ("std", _num(st.std))]
    rows.append(("zeros", f"{st.zeros:,}"))
    bad = st.nan or st.inf
    rows.append(("NaN / Inf", Text(f"{st.nan:,} / {st.inf:,}", style=rd.BAD if bad else rd.GOOD)))
    title = f"stats of {key}" + (" — has NaN or Inf values" if bad else "")
    data = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in dataclasses.asdict(st).items()}
    return call.result(title, rd.pairs(rows), key=key, **data)


@command(Spec("diff", "compare the current view with another checkpoint: keys, shapes, "
              "dtypes, and values with --values",
              (Arg("PATH", "path"),),
              (Opt("--values", help="also compare the values (reads both files)"),
               Opt("--limit", "N", "list at most N keys per group (0: all; default 20)",
                   convert=whole_number, default=20)),
              help="The current view is the selected container after the recipe's renames "
                   "and drops, with dtypes as stored (casts apply on export).", slow=True))
def diff(call: Call) -> object:
    from pttui.core.compare import render
    from pttui.core.compare import diff as compare_files

    src = call.ctx.source()
    other = open_guarded(readable_path(call.args["path"], "diff"), call.cancel)
    stored = call.session.recipe.select(src)
    view = {k: stored.get(m.key, m).renamed(k) for k, m in call.ctx.current().items()}
    mine = src.replace(containers=[Container((), view)], selected=())
    report = compare_files(mine, other, values=call.args["values"],
                           progress=lambda done, total: call.report(done, total, "diff"))
    lines = render(report, len(view), len(other.tensors), call.args["limit"])
    body = [Text(ln, style="bold" if ln.endswith(":") or ln.startswith("result") else "")
            for ln in lines[:-1]]
    verdict = Text(lines[-1], style=rd.GOOD if report.same else rd.WARN)
    return call.result("", *body, verdict, **report.to_json())
