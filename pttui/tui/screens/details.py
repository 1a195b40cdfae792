"""One key's details (enter on a key), and its value statistics on request (s).

Statistics read the tensor's bytes (no unpickling) and import torch: a worker does it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.worker import Worker, get_current_worker
from textual.widgets import Button, Static

from pttui.core.base import humanize as hz
from pttui.core.base import ReadError
from pttui.tui import errors
from pttui.tui.render import STATUS_STYLE, STATUS_WORD


class DetailsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("s", "stats", "Statistics")]

    class Stats(Message):
        def __init__(self, stats: Any, error: str | None) -> None:
            super().__init__()
            self.stats, self.error = stats, error

    def __init__(self, key: str, meta: Any, stored: Any, source: Any, status: str | None,
                 model_shape: tuple | None = None) -> None:
        super().__init__()
        self.key, self.meta, self.stored, self.source = key, meta, stored, source
        self.status, self.model_shape = status, model_shape

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text(self.key, style="bold"), classes="dialog-title")
            yield Static(self._facts())
            yield Static("", id="stats")
            with Horizontal(classes="buttons"):
                yield Button("Statistics (s)", id="stats-btn", disabled=self.stored is None)
                yield Button("Close", id="close")

    def _facts(self) -> Text:
        m = self.meta
        t = Text()
        rows = [("shape", hz.shape(m.shape)), ("dtype", m.dtype), ("stored on", m.device),
                ("elements", f"{m.numel:,}"), ("bytes", hz.nbytes(m.nbytes))]
        if self.stored is not None and m.key != self.key:
            rows.insert(0, ("read from", m.key))
        if self.stored is None:
            rows.append(("data", "none in the file: this key exists only in the model"))
        if m.storage is not None:
            rows.append(("storage", f"{m.storage.key} (+{m.storage_offset})"))
        for name, value in rows:
            t.append(f"{name:>10}  ", style="dim")
            t.append(Text(str(value)))
            t.append("\n")
        if self.status:
            t.append(f"{'status':>10}  ", style="dim")
            t.append(STATUS_WORD.get(self.status, self.status),
                     style=STATUS_STYLE.get(self.status, ""))
            if self.model_shape is not None:
                t.append(f" (model {hz.shape(self.model_shape)})")
        return t

    @on(Button.Pressed, "#stats-btn")
    def action_stats(self) -> None:
        if self.stored is None:
            self.query_one("#stats", Static).update(Text(
                "no values to read: this key is not in the file, only in the model",
                style="yellow"))
            return
        self.query_one("#stats", Static).update(Text("reading values…", style="dim"))
        self._compute()

    @work(thread=True, exclusive=True, group="stats", exit_on_error=False)
    def _compute(self) -> None:
        from pttui.core.read import Cancelled, tensor_stats

        worker = get_current_worker()

        class _Stop:  # closing the dialog cancels the worker; stop between chunks too
            def is_set(self) -> bool:
                return worker.is_cancelled

        try:
            self.post_message(self.Stats(tensor_stats(self.source, self.stored,
                                                      cancel=_Stop()), None))
        except Cancelled:
            return
        except ReadError as err:
            self.post_message(self.Stats(None, str(err)))
        except Exception as err:  # noqa: BLE001 - a tensor torch cannot read: say so
            self.post_message(self.Stats(None, f"{type(err).__name__}: {err}"))

    def on_details_screen_stats(self, message: Stats) -> None:
        if message.error:
            self.query_one("#stats", Static).update(Text(message.error, style="red"))
            return
        s = message.stats

        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.6g}"

        t = Text(f"min {num(s.min)} · max {num(s.max)} · mean {num(s.mean)} · "
                 f"std {num(s.std)}\n")
        bad = s.nan or s.inf
        t.append(f"NaN {s.nan:,} · Inf {s.inf:,} · zeros {s.zeros:,} of {s.numel:,}",
                 style="bold red" if bad else "green")
        self.query_one("#stats", Static).update(t)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        errors.report(self, event)
