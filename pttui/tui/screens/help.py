"""Help (F1 / ?): the keys, from the same table as the Footer and the palette."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from pttui.tui.keys import KEYS, OTHER_KEYS, label

INTRO = ("pttui shows what a checkpoint holds without running it, compares it with the "
         "model you choose (m), repairs it step by step (f) and exports clean weights plus "
         "a recipe (e) that `pttui fix --recipe` replays. Colours in the key tree: green "
         "matches the model, red missing, yellow unexpected, magenta shape differs, cyan "
         "accepted missing.")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for k in KEYS:
            table.add_row(Text(label(k.key)), Text(k.help or k.description))
        for key, what in OTHER_KEYS:
            table.add_row(Text(key), Text(what))
        with Vertical(classes="dialog wide"):
            yield Static(Text("pttui — keys", style="bold"), classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(INTRO))
                yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
