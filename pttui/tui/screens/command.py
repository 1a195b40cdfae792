"""The ``:`` command line: the shell's command language, run against this Session.

A line runs in a worker thread (``export`` or ``load`` take time; escape cancels
through the command's cancel event). Short results become a notification, longer
ones open in a dialog. Session changes a command makes redraw the panes through
the Session's listeners, like any other change.
"""

from __future__ import annotations

import threading
from typing import Any

from textual import work
from textual.message import Message
from textual.widgets import Input


class CommandDone(Message):
    def __init__(self, line: str, result: Any) -> None:
        super().__init__()
        self.line, self.result = line, result


class CommandLine:
    """Mixed into MainScreen, which provides ``ctx`` (a pttui.commands Context)."""

    ctx: Any
    command_cancel: threading.Event

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # a naming-convention handler: @on in a plain mixin is not collected by Textual
        if event.input.id != "command-line":
            return
        line = event.value.strip().removeprefix(":").strip()
        box = event.input
        box.value = ""
        box.display = False
        self.query_one("#key-tree").focus()
        if not line:
            return
        self.command_cancel = threading.Event()
        self.app.busy.add("command")
        self.notify(f":{line} …", timeout=2)
        self._run_command(line, self.command_cancel)

    def key_escape(self) -> None:  # overrides Actions.key_escape: both behaviours
        box = self.query_one("#command-line", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one("#key-tree").focus()
        elif self.maximized is not None:
            self.minimize()
        elif "command" in self.app.busy:
            self.command_cancel.set()

    @work(thread=True, exclusive=True, group="command", exit_on_error=False)
    def _run_command(self, line: str, cancel: threading.Event) -> None:
        from pttui.commands import run_line

        self.post_message(CommandDone(line, run_line(self.ctx, line, cancel=cancel)))

    def on_command_done(self, message: CommandDone) -> None:
        self.app.busy.discard("command")
        r = message.result
        if r.quit:
            self.app.call_later(self.app.action_quit)
            return
        if not r.body and r.title:
            self.notify(r.title, severity="information" if r.ok else "error",
                        timeout=4 if r.ok else 10)
            return
        if r.body or not r.ok:
            from pttui.tui.screens.output import OutputScreen

            self.app.push_screen(OutputScreen(r, message.line))
