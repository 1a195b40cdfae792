"""Rich ``Text`` for what the panes show. Every name from a file goes in as plain text
(``Text(key)``), never as markup: keys may hold ``[``. Formatting only, no decisions."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from pttui.core import humanize as hz
from pttui.core.keyfilter import Row

# ANSI colour names: legible on 16-colour terminals, and on light and dark themes.
STATUS_STYLE = {"ok": "green", "missing": "red", "unexpected": "yellow", "shape": "magenta",
                "accepted": "cyan", "auto": "dim"}
STATUS_WORD = {"ok": "ok", "missing": "missing", "unexpected": "unexpected",
               "shape": "shape differs", "accepted": "accepted missing",
               "auto": "filled by torch"}
MARK_WORD = {"unsafe-globals": "unsafe", "needs-allowlist": "allowlist", "cuda-saved": "cuda",
             "unreadable": "unreadable", "damaged": "damaged"}
MARK_STYLE = {"unsafe-globals": "bold red", "needs-allowlist": "yellow", "cuda-saved": "cyan",
              "unreadable": "red", "damaged": "red"}


def key_row(row: Row, model_shape: dict[str, tuple[int, ...]], filtered: bool) -> Text:
    """One tree line: the name coloured by status, then facts in dim."""
    style = STATUS_STYLE.get(row.status or "", "")
    text = Text(row.label, style=style)
    node = row.node
    if row.repeat > 1:
        text.append(f" ×{row.repeat}", style="bold")
    if row.is_leaf:
        t = node.tensor
        assert t is not None
        if row.status == "missing" or row.status == "accepted":
            text.append(f"  {hz.shape(t.shape)} {t.dtype}  ", style="dim")
            text.append(STATUS_WORD[row.status], style=style)
        else:
            text.append(f"  {hz.shape(t.shape)} {t.dtype} {t.device}", style="dim")
            if row.status == "shape":
                text.append(f"  model {hz.shape(model_shape.get(row.key, ()))}", style=style)
            elif row.status in ("unexpected", "auto"):
                text.append(f"  {STATUS_WORD[row.status]}", style=style)
        return text
    for s, c in row.counts.items():  # problems first: they are what the user looks for
        if s not in ("ok", "auto"):
            text.append(f" {c} {STATUS_WORD[s]}", style=STATUS_STYLE[s])
    n = row.count
    problems = any(s not in ("ok", "auto") for s in row.counts)
    facts = f"  {n:,} keys" if filtered or problems else \
        f"  {n:,} keys · {hz.count(node.params * row.repeat)} · {hz.nbytes(node.nbytes * row.repeat)}"
    text.append(facts, style="dim")
    return text


def file_label(entry: Any) -> Text:
    """Two lines: the name (cut with an ellipsis), then size, format and marks."""
    name = Text(entry.name, style="bold" if entry.is_dir else "", no_wrap=True,
                overflow="ellipsis")
    if entry.is_dir:
        return name
    text = Text(f"\n  {hz.nbytes(entry.size)} {entry.badge}", style="dim")
    for m in entry.marks:
        text.append(f" {MARK_WORD.get(m, m)}", style=MARK_STYLE.get(m, "yellow"))
    out = Text.assemble(name, text)
    out.no_wrap, out.overflow = True, "ellipsis"
    return out


def lines(*parts: Any) -> Text:
    """Join Text / str parts with newlines (str parts are plain text, never markup)."""
    out = Text()
    for i, p in enumerate(parts):
        if i:
            out.append("\n")
        out.append(p if isinstance(p, Text) else Text(str(p)))
    return out


def heading(title: str) -> Text:
    return Text(title, style="bold underline")


def coverage_change(before: Any, after: Any) -> Text:
    """``keys 0/52 -> 52/52 · elements 0.0% -> 100.0%``, the gain in green."""
    if before is None or after is None:
        return Text("")
    (b, total), (a, _) = before.coverage_keys, after.coverage_keys
    (bp, pt), (ap, _) = before.coverage_params, after.coverage_params
    style = "green" if (ap, a) > (bp, b) else "yellow" if (ap, a) < (bp, b) else ""
    pct = (lambda x: f"{x / pt:.1%}") if pt else (lambda x: "n/a")
    return Text(f"keys {b}/{total} -> {a}/{total} · elements {pct(bp)} -> {pct(ap)}",
                style=style)


def append_changes(t: Text, changed: list[tuple[str, str]], show: int) -> None:
    """``old -> new`` (or ``old  dropped``) for the first ``show`` changed keys."""
    for old, new in changed[:show]:
        t.append(Text(old))
        if new:
            t.append(" -> ", style="dim")
            t.append(Text(new, style="green"))
        else:
            t.append("  dropped", style="red")
        t.append("\n")
    if len(changed) > show:
        t.append(f"… and {len(changed) - show:,} more\n", style="dim")
