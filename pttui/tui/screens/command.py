"""The ``:`` command line: the shell's command language, run against this Session.

A line runs in a worker thread (``export`` or ``load`` take time; escape cancels
through the command's cancel event). Short results become a notification, longer
ones open in a dialog. Session changes a command makes redraw the panes through
the Session's listeners, like any other change.
"""

from __future__ import annotations

import threading
from typing import Any

import asyncio

from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input


class CommandSuggester(Suggester):
    """The shell's completions, shown inline: the first line ``complete_line`` offers.
    Built in a thread, so matching keys of a 100,000-key file never stalls the screen."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        from pttui.commands import model_catalog

        self.ctx, self.catalog = ctx, model_catalog()  # torchvision names load meanwhile

    async def get_suggestion(self, value: str) -> str | None:
        from pttui.commands import complete_line

        head = ":" if value.startswith(":") else ""
        lines = await asyncio.to_thread(complete_line, self.ctx, value[len(head):],
                                        self.catalog)
        return head + lines[0] if lines else None


class CommandInput(Input):
    """The ``:`` box: Tab takes the suggestion shown (as → at the end of the line does)."""

    BINDINGS = [Binding("tab", "cursor_right", "complete", show=False, priority=True)]


class CommandDone(Message):
    def __init__(self, line: str, result: Any) -> None:
        super().__init__()
        self.line, self.result = line, result


class CommandLine:
    """Mixed into MainScreen, which provides ``ctx`` (a pttui.commands Context)."""

    ctx: Any
    session: Any
    exported_recipe: Any
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
        if line.split(maxsplit=1)[0] == "open" and self.session.recipe.ops \
                and self.session.recipe is not self.exported_recipe:
            self.confirm_discard(lambda: self._start_command(line))  # as the Files pane asks
            return
        self._start_command(line)

    def _start_command(self, line: str) -> None:
        self.command_cancel = threading.Event()
        self.app.busy.add("command")
        self.notify(f":{line} …", timeout=2)
        self._run_command(line, self.command_cancel)

    def command_box_opened(self) -> None:
        """The first time the box opens, give it completion (the model catalog it starts
        loading is not wanted before)."""
        box = self.query_one("#command-line", Input)
        if box.suggester is None:
            box.suggester = CommandSuggester(self.ctx)

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
