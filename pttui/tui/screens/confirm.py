"""Yes/no modals. A typed confirmation guards what runs a file's code."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses True on yes. With ``typed``, yes needs that word typed first."""

    BINDINGS = [Binding("escape", "no", "Cancel")]

    def __init__(self, title: str, body: Text | str, yes: str = "Yes", no: str = "Cancel",
                 typed: str | None = None, danger: bool = False) -> None:
        super().__init__(classes="modal")
        self.title_text, self.body, self.yes, self.no = title, body, yes, no
        self.typed, self.danger = typed, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog" + (" danger" if self.danger else "")):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                body = self.body if isinstance(self.body, Text) else Text(self.body)
                yield Static(body)
            if self.typed:
                yield Static(Text(f"Type {self.typed!r} to confirm:"))
                yield Input(id="typed")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="error" if self.danger else "primary",
                             disabled=bool(self.typed))
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#typed" if self.typed else "#yes").focus()

    @on(Input.Changed, "#typed")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self.typed

    @on(Input.Submitted, "#typed")
    def _submit(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.typed:
            self.dismiss(True)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


def unsafe_load_screen(path: str, dangerous: list[str], blocked: list[str],
                       save_to: str | None = None) -> ConfirmScreen:
    """The only way to a weights_only=False load: every global listed, 'yes' typed."""
    body = Text()
    body.append("torch.load(weights_only=False) runs the code pickled in\n")
    body.append(path, style="bold")
    body.append("\nas you: it can read and change your files, and use your keys.\n\n")
    if dangerous:
        body.append("Globals that can run code:\n", style="bold red")
        for g in dangerous:
            body.append(f"  {g}\n", style="red")
    if blocked:
        body.append("Other globals it imports:\n", style="bold")
        for g in blocked:
            body.append(f"  {g}\n")
    if not dangerous and not blocked:
        body.append("The scan found no globals beyond torch's own.\n", style="dim")
    body.append("\nIt runs in a separate process (no network where the system allows).")
    if save_to:
        body.append(" Its tensors are saved as plain data (no pickle) to\n")
        body.append(save_to, style="bold")
    body.append("\nOnly do this for a file you made yourself or fully trust.", style="bold")
    return ConfirmScreen("Run this file's code?", body, yes="Load unsafely", typed="yes",
                         danger=True)
