"""Choose the container that holds the weights (state_dict, EMA, optimizer, ...)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from pttui.core.base import humanize as hz
from pttui.core.recipe import SelectContainer
from pttui.tui.steps import apply_op


def choose_container(node, session) -> None:  # noqa: ANN001 - a widget, a Session
    """Ask which container holds the weights (the best for the model marked) and select
    it in the recipe."""
    src = session.source
    if len(src.containers) < 2:
        node.notify("this file holds one container only")
        return
    best = None
    if session.target is not None:
        from pttui.core.repair.diagnose import best_container

        best = tuple(best_container(src, session.target)[0])
    current = tuple(session.recipe.container or src.selected or ())

    def chosen(path: tuple[str, ...] | None) -> None:
        if path is not None and path != current:
            apply_op(node, session, SelectContainer(path))

    node.app.push_screen(ContainerScreen(src.containers, current, best), chosen)


class ContainerScreen(ModalScreen[tuple[str, ...] | None]):
    """Dismisses with the chosen container's path, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, containers: list, current: tuple[str, ...] | None,
                 best: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.containers, self.current, self.best = containers, current, best

    def compose(self) -> ComposeResult:
        options = []
        for i, c in enumerate(self.containers):
            name = ".".join(c.path) or "(root)"
            t = Text(name, style="bold" if c.path == self.current else "")
            t.append(f"  {c.kind} · {len(c.tensors):,} tensors · {hz.count(c.params)} elements",
                     style="dim")
            if c.path == self.current:
                t.append("  (in use)", style="green")
            if self.best is not None and c.path == self.best:
                t.append("  fits the model best", style="cyan")
            options.append(Option(t, id=str(i)))
        with Vertical(classes="dialog"):
            yield Static(Text("Which container holds the weights?", style="bold"),
                         classes="dialog-title")
            yield OptionList(*options, id="containers")
            yield Static(Text("enter: use it · escape: cancel", style="dim"))

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.focus()
        at = next((i for i, c in enumerate(self.containers) if c.path == self.current), 0)
        ol.highlighted = at

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(tuple(self.containers[int(event.option.id or 0)].path))

    def action_cancel(self) -> None:
        self.dismiss(None)
