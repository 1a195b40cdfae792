"""What every command returns: one object both fronts can show, and scripts can test.

A command never prints. The shell renders a :class:`CommandResult` with rich; the
TUI puts the same renderables in a pane; tests read ``data`` or ``plain()``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

OK, ERROR, CANCELLED = "ok", "error", "cancelled"


class CommandCancelled(Exception):
    """The caller's cancel event was set; the command stopped and changed nothing."""


@dataclass
class CommandResult:
    """The outcome of one command line.

    ``title`` is one line: the headline of a success, or the whole error message.
    ``body`` holds rich renderables in display order (plain strings become ``Text``,
    never markup, so a key with ``[`` in it prints as it is). ``data`` is JSON-safe
    machine data. ``changed`` says the session's state changed (redraw);
    ``quit`` says the user asked to leave.
    """

    command: str
    status: str = OK
    title: str = ""
    body: list[RenderableType] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    quit: bool = False

    def __post_init__(self) -> None:
        self.body = [Text(b) if isinstance(b, str) else b for b in self.body]

    @property
    def ok(self) -> bool:
        return self.status == OK

    def add(self, *items: RenderableType) -> CommandResult:
        """Append renderables (strings as plain text); returns self for chaining."""
        self.body.extend(Text(i) if isinstance(i, str) else i for i in items)
        return self

    def plain(self, width: int = 100) -> str:
        """Title and body as plain text, no colour: for logs, transcripts and tests."""
        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                          legacy_windows=False, emoji=False, highlight=False)
        if self.title:
            console.print(Text(self.title), soft_wrap=True)
        for item in self.body:
            console.print(item, soft_wrap=isinstance(item, Text))
        return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def error(command: str, message: str, **data: Any) -> CommandResult:
    """A failed command: ``message`` is the one line that says what is wrong and what to do."""
    return CommandResult(command, ERROR, _one_line(message), data=dict(data))


def cancelled(command: str, message: str = "") -> CommandResult:
    return CommandResult(command, CANCELLED,
                         message or f"{command}: interrupted; nothing was changed")


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines) if lines else "failed"
