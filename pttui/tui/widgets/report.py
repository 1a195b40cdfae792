"""The report pane: file facts, verdict, diagnosis, suggestions, recipe, last load."""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from pttui.core.base import humanize as hz
from pttui.core.repair import report_text as rt
from pttui.core.repair import format_advice
from pttui.tui.render import heading, lines


class ReportPane(VerticalScroll):
    """A scrollable read-out of the session; the screen calls ``show`` after each change."""

    ALLOW_MAXIMIZE = True  # `z` maximises the pane, not the widget inside it

    can_focus = True

    def compose(self) -> ComposeResult:
        yield Static(Text("open a checkpoint (Files pane, Enter)", style="dim"),
                     id="report-body")

    def show(self, session: Any, analysis: Any, load: Any = None,
             unreadable: tuple[str, str] | None = None, model_from: str | None = None
             ) -> None:
        self.query_one("#report-body", Static).update(
            report_text(session, analysis, load, unreadable, model_from))


def report_text(session: Any, analysis: Any, load: Any = None,
                unreadable: tuple[str, str] | None = None, model_from: str | None = None
                ) -> Text:
    """``unreadable``: (path, why) of the file chosen when the reader could not read it;
    ``model_from``: the file the model was chosen with, when that was another one."""
    src = session.source
    if src is None and unreadable is not None:
        path, why = unreadable
        parts: list[Any] = [heading(os.path.basename(path.rstrip("/")) or path),
                            Text("pttui cannot read this file", style="bold red"),
                            Text(why, style="red"), "",
                            Text("l tries a real torch.load on it (in a separate process): "
                                 "the attempt classifies the failure and lists what can "
                                 "help", style="italic"), ""]
        if load is not None:
            parts += _load_part(load)
        return lines(*parts)
    if src is None:
        return Text("open a checkpoint (Files pane, Enter)", style="dim")
    parts: list[Any] = [heading(os.path.basename(src.path.rstrip("/")) or src.path)]
    danger = rt.danger_lines(src)
    if danger:
        parts.append(Text(danger[0], style="bold red"))
        parts += [Text("  " + line, style="red") for line in danger[1:]]
    # the verdict and the diagnosis first: on 80x24 the pane shows about ten lines
    parts += _verdict_part(session, analysis, model_from)
    sel = session.recipe.container or src.selected or ()
    cont = src.container(tuple(sel))
    facts = f"{src.format} · container {'.'.join(sel) or '(root)'}"
    if len(src.containers) > 1:
        facts += f" (1 of {len(src.containers)}: c to choose)"
    parts.append(Text(facts, style="dim"))
    if cont is not None:
        parts.append(Text(f"{len(cont.tensors):,} tensors · {hz.count(cont.params)} elements · "
                          f"{hz.nbytes(cont.nbytes)}", style="dim"))
    g = src.globals
    advice = format_advice(src)  # TorchScript, DCP: their classes are not to allow-list
    if advice is not None:
        parts.append(Text(advice, style="yellow"))
    elif g.blocked:
        parts.append(Text("needs allow-listing: " + ", ".join(g.blocked), style="yellow"))
    stored = rt.stored_device_note(src)
    if stored:
        parts.append(Text(stored, style="yellow"))
    for n in src.notes[:4]:
        parts.append(Text("note: " + n, style="dim"))
    parts += _other_part(src.other)
    if analysis is not None and analysis.error:
        parts.append(Text("recipe error: " + analysis.error, style="bold red"))
    parts.append("")
    parts += _details_part(session, analysis)
    parts += _recipe_part(session)
    if load is not None:
        parts += _load_part(load)
        if load.ok and stored:  # loading it here (mapped) does not fix the user's script
            parts.append(Text("your own script: " + stored, style="yellow"))
    return lines(*parts)


OTHER_SHOWN = 8  # entries beside the weights (epoch, global_step, hyper_parameters, ...)


def _other_part(other: dict) -> list[Any]:
    """What the file holds beside the weights, as the CLI's inspect lists it: a
    Lightning checkpoint's epoch, global_step and hyper_parameters, a training script's
    args. Values are summaries the reader made (never the file's objects)."""
    import json

    out: list[Any] = []
    for key, value in list(other.items())[:OTHER_SHOWN]:
        text = json.dumps(value, default=str, ensure_ascii=False)
        text = text if len(text) <= 160 else text[:159] + "…"
        line = Text(hz.printable(str(key)), style="bold")
        line.append(Text(" = " + hz.printable(text)))
        out.append(line)
    if len(other) > OTHER_SHOWN:
        out.append(Text(f"… {len(other) - OTHER_SHOWN} more entries (pttui inspect lists them all)",
                        style="dim"))
    return out


def _verdict_part(session: Any, analysis: Any, model_from: str | None = None) -> list[Any]:
    """Against which model, the verdict, why (the diagnosis), what it uses of the file."""
    target = session.target
    if target is None:
        return [Text("no model chosen: press m to compare with one", style="italic")]
    line = Text("vs ", style="dim")
    line.append(Text(target.label or target.spec, style="bold"))
    if model_from:
        line.append(Text(f" (chosen for {os.path.basename(model_from.rstrip('/'))}: m "
                         "changes it)", style="yellow"))
    rep = analysis.report if analysis is not None else None
    if rep is None:
        return [line, Text("comparing…", style="dim")]
    style = "bold green" if rep.strict_ok else "bold cyan" if rep.ok_with_accepted else "bold red"
    out: list[Any] = [line, Text(rt.verdict(rep), style=style)]
    if analysis.wrong_model:
        out.append(Text(analysis.wrong_model + " (m)", style="bold red"))
    else:
        out += [Text("· " + d) for d in analysis.diagnosis]
    use = rt.use_line(analysis)
    if use:
        low = analysis.dropped or analysis.file_use[0] * 2 < analysis.file_use[1]
        out.append(Text(use, style="yellow" if low else "dim"))
    return out


def _details_part(session: Any, analysis: Any) -> list[Any]:
    rep = analysis.report if analysis is not None else None
    if session.target is None or rep is None:
        return []
    out: list[Any] = [Text(rt.coverage(rep))]
    probs = rt.problem_lines(rep, limit=8)
    if probs:
        out.append(heading("problems"))
        out += [Text(p) for p in probs]
    if analysis.suggestions:
        out.append(heading("suggestions (f: guided fix-up)"))
        for i, s in enumerate(analysis.suggestions[:6], 1):
            line = Text(f"{i}. {s.title}: ")
            line.append(s.effect, style="green")
            line.append(f" [{s.confidence}]" + ("" if s.safe else " review first"), style="dim")
            out.append(line)
    if rep.accepted_missing:
        out.append(Text(f"stay uninitialised (strict=False): {len(rep.accepted_missing)}",
                        style="cyan"))
        out += [Text("    " + k) for k in rt.group_keys(list(rep.accepted_missing), limit=6)]
    out.append("")
    return out


def _recipe_part(session: Any) -> list[Any]:
    ops = session.recipe.ops
    out: list[Any] = [heading("recipe")]
    if not ops:
        out.append(Text("empty (f: guided fix-up, r rename, d drop, a accept missing)",
                        style="dim"))
    for i, op in enumerate(ops, 1):
        out.append(Text(f"{i}. {op.describe()}"))
    undo = [w for w, ok in (("u undo", session.can_undo), ("^r redo", session.can_redo)) if ok]
    if undo:
        out.append(Text(" · ".join(undo), style="dim"))
    out.append("")
    return out


def _load_part(load: Any) -> list[Any]:
    out: list[Any] = [heading("last load attempt (l)")]
    pol = load.policy or {}
    how = f"weights_only={pol.get('weights_only')} map_location={pol.get('map_location')}"
    if load.ok:
        out.append(Text(f"loaded in {load.seconds:.1f}s ({how})", style="bold green"))
        if pol.get("allow_globals"):
            out.append(Text("allowed globals: " + ", ".join(pol["allow_globals"]), style="cyan"))
        summ = load.summary or {}
        if summ.get("type"):
            out.append(Text(f"object: {summ.get('type')}", style="dim"))
        return out
    f = load.failure
    out.append(Text(f"failed: {load.kind} ({how})", style="bold red"))
    if f is not None:
        out.append(Text(f.headline, style="red"))
        out.append(Text(f.explanation))
        for fix in f.fixes:
            out.append(Text("fix: " + fix.description, style="bold red" if fix.unsafe else "cyan"))
    return out
