"""Export (e): format, path (default NAME.fixed.pt beside the source), the recipe too;
progress while it writes; the verification verdict at the end.

While it writes, the fields are disabled and the Cancel button has the focus (a stray
key must not change the path); after a successful export the fields step aside for
the result and the Close button has the focus.

The export runs in a worker thread (core ``export`` streams tensors and verifies by
reading back). Cancelling sets an event the exporter checks; it leaves nothing behind.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.worker import Worker
from textual.widgets import Button, Checkbox, Input, ProgressBar, RadioSet, Static

from pttui.core.base import humanize as hz
from pttui.core.repair import report_text as rt
from pttui.core.base import ReadError
from pttui.core.session import free_output, with_format
from pttui.tui import errors
from pttui.tui.widgets.toggles import Check, Radio

_FIELDS = ("#fmt", "#out", "#write-recipe", "#force")


def _shown(path: str) -> str:
    """Relative to where pttui started when the file lands below it (shorter to read)."""
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


class ExportScreen(ModalScreen[Any]):
    """Dismisses with the ExportResult (or None when nothing was written)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Progress(Message):
        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done, self.total = done, total

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ExportScreen.Progress)

    class Finished(Message):
        def __init__(self, result: Any, recipe: str | None, error: str | None) -> None:
            super().__init__()
            self.result, self.recipe, self.error = result, recipe, error

    def __init__(self, source: Any, recipe: Any, report: Any = None,
                 analysis: Any = None) -> None:
        super().__init__()
        self.source, self.recipe, self.report = source, recipe, report
        self.analysis = analysis  # what the file's side looks like: use, drops, variant
        self.cancel_event = threading.Event()
        self.running = False
        self.result: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="export"):
            yield Static(Text("Export the repaired weights", style="bold"),
                         classes="dialog-title")
            with Vertical(id="export-form"):
                with RadioSet(id="fmt", compact=True):
                    yield Radio(".pt (torch.save, keeps _metadata)", value=True, id="pt")
                    yield Radio(".safetensors", id="safetensors")
                yield Input(_shown(free_output(self.source.path)), id="out")
                yield Check("write the recipe too (OUT.recipe.json)", True, id="write-recipe",
                            compact=True)
                yield Check("overwrite existing files", False, id="force", compact=True)
                yield Static(self._verdict(), id="export-verdict")
            yield ProgressBar(id="progress", show_eta=False)
            with VerticalScroll(id="export-status-box"):
                yield Static("", id="export-status")
            with Horizontal(classes="buttons"):
                yield Button("Export", id="go", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#progress").display = False
        self.query_one("#out").focus()

    def _fields(self, enabled: bool) -> None:
        for sel in _FIELDS:
            self.query_one(sel).disabled = not enabled

    def _verdict(self) -> Text:
        n = len(self.recipe.ops)
        t = Text(f"recipe: {n} step{'s' if n != 1 else ''}", style="dim")
        if self.report is not None:
            ok = self.report.ok_with_accepted
            t.append("\n" + rt.verdict(self.report), style="green" if ok else "bold yellow")
            if not ok:
                t.append("\nthe exported file will not load into the model as it is",
                         style="yellow")
        a = self.analysis
        use = rt.use_line(a) if a is not None else None
        if use:
            t.append("\n" + use, style="yellow" if a.dropped else "dim")
        if a is not None and (a.variant_dropped or a.wrong_model):
            t.append("\n" + (a.variant_dropped or a.wrong_model), style="bold yellow")
        return t

    @on(RadioSet.Changed, "#fmt")
    def _format(self, event: RadioSet.Changed) -> None:
        fmt = event.pressed.id or "pt"
        box = self.query_one("#out", Input)
        box.value = with_format(box.value, fmt)

    @on(Input.Submitted, "#out")
    @on(Button.Pressed, "#go")
    def go(self) -> None:
        if self.running:
            return
        if self.result is not None:
            self.dismiss(self.result)
            return
        out = os.path.abspath(os.path.expanduser(self.query_one("#out", Input).value.strip()))
        force = self.query_one("#force", Checkbox).value
        write_recipe = self.query_one("#write-recipe", Checkbox).value
        self.running = True
        self.cancel_event.clear()
        self.app.busy.add("export")  # type: ignore[attr-defined]
        bar = self.query_one("#progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#go", Button).disabled = True
        self._fields(False)  # stray keys must not change what is being written
        self.query_one("#cancel", Button).focus()
        self._status(Text(f"writing {out} …"))
        self._export(out, force, write_recipe)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _export(self, out: str, force: bool, write_recipe: bool) -> None:
        from pttui.core.export import OutputExists
        from pttui.core.session import export_session

        def progress(done: int, total: int) -> None:
            self.post_message(self.Progress(done, total))

        try:
            result, rpath = export_session(self.source, self.recipe, out, force=force,
                                           write_recipe=write_recipe, progress=progress,
                                           cancel=self.cancel_event)
        except OutputExists as err:  # in this dialog's words, not the command line's
            self.post_message(self.Finished(None, None, f"{err.path}: {err.what}; not "
                                            "replacing it. Choose another name, or tick "
                                            "'overwrite existing files'"))
        except ReadError as err:
            self.post_message(self.Finished(None, None, str(err)))
        except Exception as err:  # noqa: BLE001 - show it; the exporter left nothing behind
            self.post_message(self.Finished(None, None, f"{type(err).__name__}: {err}"))
        else:
            self.post_message(self.Finished(result, rpath, None))

    def on_export_screen_progress(self, message: Progress) -> None:
        self.query_one("#progress", ProgressBar).update(total=message.total,
                                                        progress=message.done)

    def on_export_screen_finished(self, message: Finished) -> None:
        self.running = False
        self.app.busy.discard("export")  # type: ignore[attr-defined]
        go = self.query_one("#go", Button)
        go.disabled = False
        if message.error:
            self._status(Text(message.error, style="red"))
            self.query_one("#progress").display = False
            self._fields(True)  # change the path or tick overwrite, and try again
            self.query_one("#out").focus()
            return
        r = message.result
        self.result = r
        t = Text(f"wrote {_shown(r.path)}\n{r.tensors:,} tensors · {hz.nbytes(r.nbytes)} · "
                 f"{r.seconds:.2f}s\n")
        if r.verified:
            t.append(r.verdict, style="bold green")  # says what was compared (casts too)
            for note in r.problems:  # e.g. leftovers of killed exports removed, _metadata
                t.append(f"\nnote: {note}", style="yellow")
        else:
            t.append("VERIFY FAILED: " + "; ".join(r.problems), style="bold red")
        if message.recipe:
            t.append(Text(f"\nrecipe: {_shown(message.recipe)}"))
            from pttui.core.recipe import replay_command

            # the model's arguments too (num_classes=10): the command rebuilds that model
            if self.report is not None and not self.report.ok_with_accepted:
                t.append(Text("\nno replay: the model would not load this result, so "
                              "`pttui fix` refuses the recipe", style="dim"))
            else:
                t.append(Text("\nreplay: " + replay_command(message.recipe, self.recipe,
                                                             self.source.path, r.path),
                              style="dim"))
        self._status(t)
        go.label = "Close"
        self.query_one("#cancel").display = False
        # the written file and its verdict replace the form (nothing there applies any
        # more), so the result and Close fit on 80x24
        self.query_one("#export-form").display = False
        go.focus()
        self.app.notify(f"exported {os.path.basename(r.path)}" +
                        (" (verified)" if r.verified else " — VERIFY FAILED"),
                        severity="information" if r.verified else "error")

    def _status(self, text: Text) -> None:
        self.query_one("#export-status", Static).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.running:
            self.cancel_event.set()
            self._status(Text("cancelling…", style="yellow"))
            return
        self.dismiss(self.result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        text = errors.report(self, event)
        if text is not None:
            self.post_message(self.Finished(None, None, text))
