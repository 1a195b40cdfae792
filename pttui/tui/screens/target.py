"""The model picker: torchvision's list (searchable), any spec, model arguments.

The model is built on the meta device in a worker thread (importing torch and the
model's code takes seconds); the dialog stays open and shows an error in place.
"""

from __future__ import annotations

import shlex
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.worker import Worker
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from pttui.core.base import ReadError
from pttui.tui import errors


class TargetScreen(ModalScreen[Any]):
    """Dismisses with the built Target, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Names(Message):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    class Built(Message):
        def __init__(self, target: Any, error: str | None) -> None:
            super().__init__()
            self.target, self.error = target, error

    def __init__(self, spec: str = "", args: dict | None = None) -> None:
        super().__init__()
        self.spec, self.args = spec, dict(args or {})
        self.names: list[str] = []
        self.status_text = ""
        self._carried_args = " ".join(f"{k}={v!r}" for k, v in self.args.items())

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text("Which model are these weights for?", style="bold"),
                         classes="dialog-title")
            yield Input(placeholder="search torchvision models", id="tv-search")
            yield OptionList(Option(Text("loading torchvision's model list…", style="dim"),
                                    disabled=True), id="tv-list")
            yield Input(self.spec, id="spec", placeholder="torchvision:NAME · pkg.mod:factory "
                        "· path/file.py:Factory · ref:other.pt")
            yield Input(self._carried_args, id="args",
                        placeholder="model arguments: num_classes=10 dropout=0.1")
            yield Static("", id="target-status")
            with Horizontal(classes="buttons"):
                yield Button("Use this model", id="build", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_resize(self) -> None:
        """The list gives up rows first, so the fields, an error of a few lines and the
        buttons stay on a 24-line terminal."""
        width = max(20, self.query_one("#target-status").size.width or 76)
        lines = sum(max(1, -(-len(line) // width)) for line in self.status_text.splitlines())
        room = self.size.height - 17 - max(1, lines)
        self.query_one("#tv-list").styles.max_height = max(3, min(10, room))

    def on_mount(self) -> None:
        self.query_one("#tv-search" if not self.spec else "#spec").focus()
        names = getattr(self.app, "torchvision_names", None)
        if names is not None:
            self._show_names(names)
        else:
            self._load_names()

    @work(thread=True, exclusive=True, group="tv-names", exit_on_error=False)
    def _load_names(self) -> None:
        from pttui.core.target import torchvision_models

        self.post_message(self.Names(torchvision_models()))

    def on_target_screen_names(self, message: Names) -> None:
        self.app.torchvision_names = message.names  # type: ignore[attr-defined]
        self._show_names(message.names)

    def _show_names(self, names: list[str]) -> None:
        self.names = names
        self._filter(self.query_one("#tv-search", Input).value)

    @on(Input.Changed, "#tv-search")
    def _search(self, event: Input.Changed) -> None:
        if self.names:
            self._filter(event.value)

    def _filter(self, text: str) -> None:
        needle = text.strip().lower()
        shown = [n for n in self.names if needle in n.lower()]
        ol = self.query_one("#tv-list", OptionList)
        ol.clear_options()
        if not self.names:
            ol.add_option(Option(Text("torchvision is not available", style="dim"),
                                 disabled=True))
            return
        ol.add_options([Option(Text(n), id=n) for n in shown] or
                       [Option(Text("no match", style="dim"), disabled=True)])

    @on(Input.Submitted, "#tv-search")
    def _search_done(self) -> None:
        """One match: build it. Several: go to the list, first one highlighted."""
        ol = self.query_one("#tv-list", OptionList)
        ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
        ids = [i for i in ids if i]
        if len(ids) == 1:
            self._take(ids[0])
            return
        self._to_list()

    def key_down(self, event: events.Key) -> None:
        """Down in the search goes to the matches (Up and Down move there as usual)."""
        if self.focused is self.query_one("#tv-search"):
            event.stop()
            event.prevent_default()
            self._to_list()

    def _to_list(self) -> None:
        ol = self.query_one("#tv-list", OptionList)
        if any(ol.get_option_at_index(i).id for i in range(ol.option_count)):
            ol.highlighted = 0
        ol.focus()

    @on(OptionList.OptionSelected, "#tv-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._take(event.option.id)

    def _take(self, name: str) -> None:
        """A model from the list: arguments typed for another model do not carry over
        (``bn_names`` means nothing to resnet18), and Enter builds it at once."""
        spec = f"torchvision:{name}"
        args = self.query_one("#args", Input)
        if spec != self.spec and args.value == self._carried_args:
            args.value = ""  # the previous model's, untouched here: not for this one
        self.query_one("#spec", Input).value = spec
        self.build()

    @on(Input.Submitted, "#spec,#args")
    @on(Button.Pressed, "#build")
    def build(self) -> None:
        spec = self.query_one("#spec", Input).value.strip()
        try:
            from pttui.core.target import parse_model_args

            # quotes kept: `name='bn'` is the literal 'bn', as it reads
            args = parse_model_args(shlex.split(self.query_one("#args", Input).value,
                                                posix=False))
        except (ReadError, ValueError) as err:
            self._status(str(err), "red")
            return
        if not spec:
            self._status("choose a model from the list or type a spec", "yellow")
            return
        self._status(f"building {spec} on the meta device…", "dim")
        self.query_one("#build", Button).disabled = True
        self._build(spec, args)

    @work(thread=True, exclusive=True, group="target", exit_on_error=False)
    def _build(self, spec: str, args: dict) -> None:
        from pttui.core.target import load_target

        try:
            self.post_message(self.Built(load_target(spec, args), None))
        except ReadError as err:
            self.post_message(self.Built(None, str(err)))
        except Exception as err:  # noqa: BLE001 - user code: show it, keep the dialog
            self.post_message(self.Built(None, f"{type(err).__name__}: {err}"))

    def on_target_screen_built(self, message: Built) -> None:
        self.query_one("#build", Button).disabled = False
        if message.error:
            self._status(message.error, "red")
        else:
            self.dismiss(message.target)

    def _status(self, text: str, style: str) -> None:
        self.status_text = text
        self.query_one("#target-status", Static).update(Text(text, style=style))
        self.call_after_refresh(self.on_resize)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        errors.report(self, event)
