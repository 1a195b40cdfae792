"""The ``:`` command line: the shell's command language, run against the screen's Session.

The bar owns its input box, its worker and the cancel event of the command it runs. A
submitted line is posted as ``CommandBar.Asked`` (the screen may ask first, e.g. before
``open`` discards an unsaved recipe, then calls ``run``); ``CommandBar.Done`` says it
ended. Session changes a command makes redraw the panes through the
Session's listeners, like any other change.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from textual import on, work
from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widget import Widget
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
    """The ``:`` box: Tab completes the line as it is now. The inline suggestion is built
    in a thread and may not have arrived for the last key typed; Tab then completes
    itself, so fast typing never loses the completion ("model torch⇥resn" stays
    "model torchvision:resn")."""

    BINDINGS = [Binding("tab", "complete", "complete", show=False, priority=True)]

    def action_complete(self) -> None:
        from pttui.commands import complete_line

        suggester = self.suggester
        value = self.value
        if not isinstance(suggester, CommandSuggester):
            self.action_cursor_right()
            return
        head = ":" if value.startswith(":") else ""
        lines = complete_line(suggester.ctx, value[len(head):], suggester.catalog)
        if lines and (head + lines[0]).startswith(value) and head + lines[0] != value:
            self.value = head + lines[0]
        self.cursor_position = len(self.value)


class CommandBar(Widget):
    """Hidden until ``open``; one command at a time, cancelled by ``cancel``."""

    DEFAULT_CSS = "CommandBar { dock: bottom; height: auto; display: none; }"

    class Asked(Message):
        """The user submitted ``line``; the screen calls ``run`` (or does not)."""

        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class Done(Message):
        def __init__(self, line: str, result: Any) -> None:
            super().__init__()
            self.line, self.result = line, result

    def __init__(self, ctx: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.cancel_event = threading.Event()
        self.running = False

    def compose(self):  # noqa: ANN201 - ComposeResult
        yield CommandInput(id="command-line",
                           placeholder="pttui command (Tab completes; help lists them)")

    @property
    def is_open(self) -> bool:
        return self.display

    def open(self) -> None:
        box = self.query_one(CommandInput)
        if box.suggester is None:  # the model catalog it loads is not wanted before
            box.suggester = CommandSuggester(self.ctx)
        self.display = True
        box.focus()

    def close(self) -> None:
        """Hide the box, dropping what was typed (the screen moves the focus on)."""
        self.query_one(CommandInput).value = ""
        self.display = False

    def run(self, line: str) -> None:
        self.cancel_event = threading.Event()
        self.running = True
        self.app.busy.add("command")  # type: ignore[attr-defined]
        self.notify(f":{line} …", timeout=2)
        self._work(line, self.cancel_event)

    def cancel(self) -> bool:
        """Ask the running command to stop; False when none runs."""
        if not self.running:
            return False
        self.cancel_event.set()
        return True

    @on(Input.Submitted, "#command-line")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        line = event.value.strip().removeprefix(":").strip()
        self.close()
        self.post_message(self.Asked(line))

    @work(thread=True, exclusive=True, group="command", exit_on_error=False)
    def _work(self, line: str, cancel: threading.Event) -> None:
        from pttui.commands import run_line

        self.post_message(self.Done(line, run_line(self.ctx, line, cancel=cancel)))

    def on_command_bar_done(self, message: Done) -> None:
        """Short results become a notification, longer ones (and errors with a body)
        open in a dialog; ``quit`` quits. The message goes on to the screen."""
        self.running = False
        self.app.busy.discard("command")  # type: ignore[attr-defined]
        r = message.result
        if r.quit:
            self.app.call_later(self.app.action_quit)
        elif not r.body and r.title:
            self.notify(r.title, severity="information" if r.ok else "error",
                        timeout=4 if r.ok else 10)
        elif r.body or not r.ok:
            from pttui.tui.screens.output import OutputScreen

            self.app.push_screen(OutputScreen(r, message.line))
