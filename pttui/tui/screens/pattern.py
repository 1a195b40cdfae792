"""Rename by regex or drop by pattern, with a live preview of the affected keys.

Each keystroke starts a preview in a worker (the newest wins): the keys the op
would change, and the coverage before and after when a model is chosen.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.worker import Worker
from textual.widgets import Button, Checkbox, Input, Static

from pttui.core.base import ReadError
from pttui.tui import errors
from pttui.core.recipe import Drop, Op, RegexRename
from pttui.tui.render import append_changes, coverage_change
from pttui.tui.widgets.toggles import Check

SHOW = 40  # preview lines


def make_op(mode: str, pattern: str, replacement: str, glob: bool) -> Op:
    """The op the fields describe; ReadError when they are not valid."""
    if not pattern:
        raise ReadError("type a pattern")
    if mode == "rename":
        return RegexRename(pattern, replacement)
    return Drop(pattern, kind="glob" if glob else "regex")


class PatternScreen(ModalScreen[Op | None]):
    """``mode`` is ``rename`` or ``drop``; dismisses with the op to apply, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Preview(Message):
        def __init__(self, gen: int, body: Text, ok: bool) -> None:
            super().__init__()
            self.gen, self.body, self.ok = gen, body, ok

    def __init__(self, mode: str, source: Any, recipe: Any, target: Any,
                 pattern: str = "", replacement: str = "", title: str = "") -> None:
        super().__init__()
        self.mode, self.source, self.recipe, self.target = mode, source, recipe, target
        self.pattern, self.replacement = pattern, replacement
        self.title_text = title or ("Rename keys (regex)" if mode == "rename" else
                                    "Drop keys matching a pattern")
        self.gen = 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Input(self.pattern, id="pattern", placeholder="regex, e.g. ^module\\.")
            if self.mode == "rename":
                yield Input(self.replacement, id="replacement",
                            placeholder="replacement (\\1 for a group; empty removes)")
            else:
                yield Check("glob instead of regex (whole key: *.bias)", id="glob", compact=True)
            with VerticalScroll(id="preview"):
                yield Static("", id="preview-body")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="apply", variant="primary", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#pattern").focus()
        self._changed()

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self.gen += 1
        self.query_one("#apply", Button).disabled = True
        self._preview(self.gen, *self._fields())

    def _fields(self) -> tuple[str, str, bool]:
        pattern = self.query_one("#pattern", Input).value
        repl = self.query_one("#replacement", Input).value if self.mode == "rename" else ""
        glob = self.mode == "drop" and self.query_one("#glob", Checkbox).value
        return pattern, repl, glob

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _preview(self, gen: int, pattern: str, repl: str, glob: bool) -> None:
        from pttui.core.repair import preview_op

        try:
            op = make_op(self.mode, pattern, repl, glob)
            changed, before, after = preview_op(self.source, self.recipe, self.target, op)
        except ReadError as err:
            self.post_message(self.Preview(gen, Text(str(err), style="red"), False))
            return
        self.post_message(self.Preview(gen, preview_text(changed, before, after), bool(changed)))

    def on_pattern_screen_preview(self, message: Preview) -> None:
        if message.gen != self.gen:
            return  # an older keystroke's preview
        self.query_one("#preview-body", Static).update(message.body)
        self.query_one("#apply", Button).disabled = not message.ok

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        if self.query_one("#apply", Button).disabled:
            return
        try:
            self.dismiss(make_op(self.mode, *self._fields()))
        except ReadError as err:
            self.query_one("#preview-body", Static).update(Text(str(err), style="red"))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        errors.report(self, event)


def preview_text(changed: list[tuple[str, str]], before: Any, after: Any) -> Text:
    """``N keys change``, the coverage change on the next line (on top, where it shows
    however long the list), then ``old -> new`` lines (``old  dropped``)."""
    t = Text()
    if not changed:
        t.append("no key changes", style="yellow")
    else:
        t.append(f"{len(changed):,} keys change", style="bold")
    if before is not None:
        t.append("\ncoverage: ")
        t.append(coverage_change(before, after))
    t.append("\n")
    if changed:
        t.append("\n")
    append_changes(t, changed, SHOW)
    return t
