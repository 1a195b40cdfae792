"""Rich ``Text`` for what the panes show. Every name from a file goes in as plain text
(``Text(key)``), never as markup: keys may hold ``[``. Formatting only, no decisions."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from pttui.core.base import humanize as hz
from pttui.core.read import Row

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


def middle(name: str, width: int) -> str:
    """``name`` cut to ``width`` in the middle, keeping its end (``….fixed.pt`` tells
    apart names that share a long start)."""
    if width <= 0 or len(name) <= width:
        return name
    if width < 6:
        return name[:width - 1] + "…"
    tail = (width - 1) * 3 // 5
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def _tight(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


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
        if row.status == "shape":
            # both shapes first and tight: on 80 columns the model's shape must not be
            # the part cut off (dtype and device are in the details, enter)
            text.append(f"  {_tight(t.shape)}", style="dim")
            text.append(f" model {_tight(model_shape.get(row.key, ()))}", style=style)
            text.append(f" {t.dtype} {t.device}", style="dim")
            return text
        if row.status in STATUS_WORD and row.status != "ok":
            # the word right after the name: a narrow pane cuts the facts, not the status
            # (colour alone does not say it on a 16-colour or monochrome terminal)
            text.append(f"  {STATUS_WORD[row.status]}", style=style)
        where = "" if row.status in ("missing", "accepted") else f" {t.device}"
        text.append(f"  {hz.shape(t.shape)} {t.dtype}{where}", style="dim")
        return text
    for s, c in row.counts.items():  # problems first: they are what the user looks for
        if s not in ("ok", "auto"):
            text.append(f" {c} {STATUS_WORD[s]}", style=STATUS_STYLE[s])
    n = row.count
    sizes = f"{hz.count(node.params * row.repeat)} · {hz.nbytes(node.nbytes * row.repeat)}"
    if filtered:
        facts = f"  {n:,} keys"
    elif any(s in ("missing", "accepted") for s in row.counts) and \
            all(s in ("missing", "accepted", "auto") for s in row.counts):
        facts = f" · {sizes}"  # none of it in the file: "50 missing" counts it, these size it
    else:
        facts = f"  {n:,} keys · {sizes}"
    text.append(facts, style="dim")
    return text


def file_label(entry: Any, width: int = 0) -> Text:
    """The name (cut in the middle to ``width``, keeping its end), then size, format and
    marks on the next line; marks that do not fit move to a line of their own."""
    name = Text(middle(entry.name, width), style="bold" if entry.is_dir else "",
                no_wrap=True, overflow="ellipsis")
    if entry.is_dir:
        return name
    facts = f"  {hz.nbytes(entry.size)} {entry.badge}"
    marks = [(MARK_WORD.get(m, m), MARK_STYLE.get(m, "yellow")) for m in entry.marks]
    text = Text(f"\n{facts}", style="dim")
    used = len(facts)
    for word, style in marks:
        if width and used + 1 + len(word) > width:
            text.append("\n ")
            used = 1
        text.append(f" {word}", style=style)
        used += 1 + len(word)
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
    """``keys 0/52 -> 52/52 · elements 0.0% -> 100.0%``, the gain in green, a loss in
    yellow."""
    if before is None or after is None:
        return Text("")
    (b, bt), (a, at) = before.coverage_keys, after.coverage_keys
    (bp, bpt), (ap, apt) = before.coverage_params, after.coverage_params
    # each side against its own model (a step may rebuild the model with other args)
    bf, af = (bp / bpt if bpt else 0.0), (ap / apt if apt else 0.0)
    style = "green" if (af, a) > (bf, b) else "yellow" if (af, a) < (bf, b) else ""

    def pct(x: int, total: int) -> str:
        return f"{x / total:.1%}" if total else "n/a"

    return Text(f"keys {b}/{bt} -> {a}/{at} · elements {pct(bp, bpt)} -> {pct(ap, apt)}",
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
