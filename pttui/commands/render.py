"""Rich renderables the commands build their results from: compact tables that paste
well into an issue, verdicts in colour (which a dumb terminal simply drops), key
lists grouped the way a load report groups them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from pttui.core.base import humanize as hz
from pttui.core.repair import report_text as rt
from pttui.core.compare import Report
from pttui.core.base import TensorMeta

GOOD, WARN, BAD, DIM = "green", "yellow", "red", "dim"


def table(*headers: str, right: Iterable[str] = ()) -> Table:
    """A borderless table with bold headers; columns named in ``right`` align right."""
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold",
              collapse_padding=True)
    right = set(right)
    for h in headers:
        t.add_column(h, justify="right" if h in right else "left", overflow="fold")
    return t


def pairs(rows: Iterable[tuple[str, Any]]) -> Table:
    """``label  value`` lines, labels dimmed."""
    t = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
    t.add_column(style=DIM, no_wrap=True)
    t.add_column(overflow="fold")
    for label, value in rows:
        t.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return t


def tensor_table(items: Iterable[tuple[str, TensorMeta]], limit: int = 0) -> tuple[Table, int]:
    """key / shape / dtype / device rows; returns the table and how many were left out."""
    t = table("key", "shape", "dtype", "device", "size", right=("size",))
    items = list(items)
    shown = items if limit <= 0 else items[:limit]
    for name, m in shown:
        t.add_row(Text(name), hz.shape(m.shape), m.dtype, m.device, hz.nbytes(m.nbytes))
    return t, len(items) - len(shown)


def more(left: int, how: str) -> Text:
    return Text(f"… and {left:,} more ({how})", style=DIM)


def verdict(report: Report) -> Text:
    style = GOOD if report.strict_ok else WARN if report.ok_with_accepted else BAD
    return Text(rt.verdict(report), style=f"bold {style}")


def coverage(report: Report) -> Text:
    return Text(rt.coverage(report))


def coverage_short(report: Report) -> str:
    k, kt = report.coverage_keys
    return f"{k}/{kt} keys"


def problems(report: Report, limit: int = 12) -> list[Text]:
    """Missing / unexpected / shape lines, grouped (``layers.{0..31}``), headings bold."""
    out = []
    for line in rt.problem_lines(report, limit=limit):
        out.append(Text(line, style="" if line.startswith(" ") else "bold"))
    return out


def suggestions(items: list[Any]) -> Table:
    """Numbered steps with their measured effect; unsafe ones say "review first"."""
    t = table("#", "step", "effect", "confidence", right=("#",))
    for i, s in enumerate(items, 1):
        title = Text(s.title)
        if s.why:
            title.append("\n" + s.why, style=DIM)
        conf = Text(s.confidence, style=GOOD if s.confidence == "high" else
                    WARN if s.confidence == "medium" else BAD)
        if not s.safe:
            conf.append(" (review first)", style=DIM)
        t.add_row(str(i), title, s.effect, conf)
    return t


def note(text: str) -> Text:
    return Text(text, style=DIM)


def plural(n: int, word: str) -> str:
    return hz.plural(n, word)
