"""A command's result, shown as the shell would show it (the same renderables)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class OutputScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, result: Any, line: str = "") -> None:
        super().__init__()
        self.result, self.line = result, line

    def compose(self) -> ComposeResult:
        r = self.result
        style = "bold" if r.ok else "bold red"
        with Vertical(classes="dialog wide"):
            head = Text(f":{self.line or r.command}", style="dim")
            if r.title:
                head.append("\n")
                head.append(Text(r.title, style=style))
            elif not r.ok:
                head.append(f"  {r.status}", style=style)
            yield Static(head, classes="dialog-title")
            with VerticalScroll(id="output-body"):
                for item in r.body:
                    yield Static(item)
            yield Static(Text("escape closes", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#output-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
