"""The guided fix-up (f): one proposed step at a time, with its preview and effect.

``pttui.core.repair.guide.next_step`` decides what comes next (in a worker); this screen
shows it and applies the user's answer to the Session: accept, edit (as a regex,
live preview), skip, or undo. A step may also rebuild the model with other arguments
(``num_classes``); that goes through the main screen's ``set_target``. Leftover
missing keys end in an explicit strict=False acknowledgement, a step of its own,
listing every key that stays uninitialised.
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
from textual.widgets import Button, Static

from pttui.core.base import ReadError
from pttui.tui import errors
from pttui.tui.render import append_changes, coverage_change
from pttui.tui.screens.pattern import SHOW, PatternScreen

_STAGE_WORDS = {"container": "container", "model": "another model", "globals": "unsafe globals", "device": "device mapping",
                "variant": "model variant", "classes": "model arguments", "prefix": "prefixes",
                "rename": "renames", "values": "values and shapes", "shape": "shape mismatches",
                "leftover": "leftovers",
                "accept": "strict=False acknowledgement", "stuck": "manual work", "done": "done"}


class WizardScreen(ModalScreen[str | None]):
    """Dismisses with ``"export"`` when the user goes on to export, ``"model"`` to choose
    another model, else None."""

    BINDINGS = [Binding("a", "accept", "Accept"), Binding("e", "edit", "Edit"),
                Binding("s", "skip", "Skip"), Binding("u", "undo", "Undo"),
                Binding("escape", "close", "Close")]

    class Ready(Message):
        def __init__(self, gen: int, step: Any, error: str | None,
                     notes: list[str] | None = None) -> None:
            super().__init__()
            self.gen, self.step, self.error, self.notes = gen, step, error, notes or []

    def __init__(self, session: Any, set_target: Any = None) -> None:
        super().__init__()
        self.session = session
        self.set_target = set_target or session.set_target
        self.seen: set[str] = set()
        # ("applied" | "skipped" | "target", ident, the model before a "target" answer)
        self.history: list[tuple[str, str, Any]] = []
        self.step: Any = None
        self.gen = 0
        self.applied = 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall", id="wizard"):
            yield Static(Text("Guided fix-up", style="bold"), classes="dialog-title",
                         id="wizard-title")
            with VerticalScroll(id="wizard-body"):
                yield Static(Text("working out the next step…", style="dim"), id="step")
            with Horizontal(classes="buttons"):
                yield Button("Accept (a)", id="accept", variant="primary")
                yield Button("Edit (e)", id="edit")
                yield Button("Skip (s)", id="skip")
                yield Button("Undo (u)", id="undo")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self.query_one("#wizard-body").focus()  # up/down/page keys scroll a long step
        self._next()

    # -- computing ------------------------------------------------------------------------

    def _next(self) -> None:
        self.gen += 1
        self.step = None
        self._buttons()
        s = self.session
        self._compute(self.gen, s.source, s.recipe, s.target, set(self.seen))

    @work(thread=True, exclusive=True, group="wizard", exit_on_error=False)
    def _compute(self, gen: int, source: Any, recipe: Any, target: Any, seen: set) -> None:
        from pttui.core.repair import diagnosis, next_step

        try:
            step = next_step(source, recipe, target, seen)
            notes = diagnosis(source, recipe, target) if not seen else []
            self.post_message(self.Ready(gen, step, None, notes))
        except ReadError as err:
            self.post_message(self.Ready(gen, None, str(err)))

    def on_wizard_screen_ready(self, message: Ready) -> None:
        if message.gen != self.gen:
            return
        self.step = message.step
        body = step_text(message.step, message.notes) if message.step is not None else \
            Text(message.error or "no step", style="red")
        self.query_one("#step", Static).update(body)
        self.query_one("#wizard-body").scroll_home(animate=False)
        if message.step is not None:
            n = len(self.history) + 1
            title = Text(f"Guided fix-up · step {n} · {_STAGE_WORDS[message.step.stage]}",
                         style="bold")
            self.query_one("#wizard-title", Static).update(title)
        self._buttons()

    def _buttons(self) -> None:
        step = self.step
        stage = step.stage if step is not None else None
        accept = self.query_one("#accept", Button)
        accept.disabled = step is None or stage == "stuck"
        accept.display = stage != "stuck"
        if stage == "done":
            accept.label = "Export (a)"
        elif stage == "model":
            accept.label = "Choose a model (a)"
        elif stage == "accept":
            accept.label = f"Leave {len(step.uninitialised)} uninitialised (a)"
        elif step is not None and step.target is not None:
            accept.label = "Rebuild the model (a)"
        else:
            accept.label = "Apply (a)" if step is not None and step.ops else "Continue (a)"
        # only the answers that apply: the last step cannot be edited or skipped
        edit = self.query_one("#edit", Button)
        edit.disabled = step is None or step.editable is None
        edit.display = stage not in ("done", "stuck", "accept") and \
            (step is None or step.editable is not None)
        skip = self.query_one("#skip", Button)
        skip.disabled = step is None or stage in ("done", "stuck", "model")
        skip.display = stage not in ("done", "stuck", "model")
        self.query_one("#undo", Button).disabled = not self.history

    # -- answers ----------------------------------------------------------------------------

    @on(Button.Pressed, "#accept")
    def action_accept(self) -> None:
        step = self.step
        if step is None or step.stage == "stuck":
            return
        if step.stage == "done":
            self.dismiss("export")
            return
        if step.stage == "model":
            self.dismiss("model")
            return
        if step.target is not None:  # rebuild the model with the step's arguments
            self.history.append(("target", step.ident, self.session.target))
            self.seen.add(step.ident)
            self.set_target(step.target)
            self._next()
            return
        self._apply(step.ops, step.ident)

    def _apply(self, ops: list, ident: str) -> None:
        if ops:
            recipe = self.session.recipe
            try:
                for op in ops:
                    recipe = recipe.with_op(op)
                self.session.set_recipe(recipe)  # one undo step for the whole proposal
            except ReadError as err:
                self.notify(str(err), severity="error")
                return
            self.applied += 1
        self.seen.add(ident)
        self.history.append(("applied" if ops else "skipped", ident, None))
        self._next()

    @on(Button.Pressed, "#edit")
    def action_edit(self) -> None:
        step = self.step
        if step is None or step.editable is None:
            return
        from pttui.core.repair import as_regex

        pattern, repl = as_regex(step.ops[0])
        s = self.session
        screen = PatternScreen(step.editable, s.source, s.recipe, s.target, pattern, repl,
                               title=f"Edit: {step.title}")

        def done(op: Any) -> None:
            if op is not None:
                self._apply([op], step.ident)

        self.app.push_screen(screen, done)

    @on(Button.Pressed, "#skip")
    def action_skip(self) -> None:
        step = self.step
        if step is None or step.stage in ("done", "stuck", "model"):
            return
        self.seen.add(step.ident)
        self.history.append(("skipped", step.ident, None))
        self._next()

    @on(Button.Pressed, "#undo")
    def action_undo(self) -> None:
        if not self.history:
            return
        what, ident, model = self.history.pop()
        self.seen.discard(ident)
        if what == "applied":
            self.session.undo()
            self.applied -= 1
        elif what == "target":
            self.set_target(model)
        self._next()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        errors.report(self, event)


def step_text(step: Any, notes: list[str] | None = None) -> Text:
    """A step as the user reads it: what, why, the coverage change, the keys it changes,
    and every key it leaves uninitialised. ``notes`` (the diagnosis) come first. The
    strict=False acknowledgement lists its keys right under its title, so they show
    on 80x24 without scrolling."""
    from pttui.core.repair import report_text as rt

    t = Text()
    for note in notes or []:
        t.append(Text("· " + note, style="italic"))
        t.append("\n")
    if notes:
        t.append("\n")
    t.append(Text(step.title, style="bold"))
    t.append("\n")
    if step.stage == "accept":
        _uninitialised(t, step.uninitialised, "stay at the model's initialisation:")
        t.append("\n")
        t.append(Text(step.why))
        t.append("\n")
        if step.before is not None and step.after is not None:
            t.append("\nnow:   ", style="dim")
            t.append(Text(rt.verdict(step.before), style="red"))
            t.append("\nafter: ", style="dim")
            t.append(Text(rt.verdict(step.after), style="cyan"))
            t.append("\n")
        return t
    t.append(Text(step.why))
    t.append("\n")
    if step.before is not None and step.after is not None and (step.ops or step.target):
        t.append("\ncoverage: ")
        t.append(coverage_change(step.before, step.after))
        t.append("\n")
    elif step.stage == "done" and step.after is not None:  # the title says the verdict
        t.append("\n" + rt.coverage(step.after) + "\n")
    elif step.after is not None:
        t.append("\n" + rt.verdict(step.after) + "\n" + rt.coverage(step.after) + "\n")
    if step.target is not None:
        t.append(Text(f"\nmodel: {step.target.label or step.target.spec}\n", style="bold"))
    if step.affected:
        t.append(f"\n{len(step.affected):,} keys change:\n", style="bold")
        append_changes(t, step.affected, SHOW)
    if step.leaves_missing:
        t.append(f"\nafterwards missing (the next step asks to accept them): "
                 f"{len(step.leaves_missing)}\n", style="yellow")
        for k in step.leaves_missing:
            t.append(Text("  " + k, style="yellow"))
            t.append("\n")
    if step.uninitialised:
        _uninitialised(t, step.uninitialised, "accepted (strict=False), at the model's "
                       "initialisation:")
    return t


def _uninitialised(t: Text, keys: list[str], heading: str) -> None:
    n = len(keys)
    t.append(f"\n{n} model key{'s' if n != 1 else ''} {heading}\n", style="bold cyan")
    for k in keys:  # every one: exactly what stays uninitialised
        t.append(Text("  " + k, style="cyan"))
        t.append("\n")
