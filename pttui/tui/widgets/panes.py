"""The main screen's four panes: which show, at which width, which has the focus. The
Files and Devices panes share the left column, the Keys and Report panes the right one,
side by side; on a narrow terminal (under NARROW columns) the Report goes under the keys
(the diagnosis stays in sight at 80x24) and the Devices pane starts hidden."""

from __future__ import annotations

from textual.containers import Horizontal

NARROW = 100
_FOCUS = {"files": "#files-list", "keys": "#key-tree", "report": "#report"}


class Panes(Horizontal):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._narrow: bool | None = None

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.query_one("#devices").display = not narrow
            self.set_class(narrow, "-narrow")

    def toggle(self, pane: str) -> None:
        """Show or hide a pane (the left column shows while one of its panes does)."""
        w = self.query_one(f"#{pane}")
        w.display = not w.display
        self.query_one("#left").display = (self.query_one("#files").display
                                           or self.query_one("#devices").display)

    def focus_pane(self, pane: str) -> None:
        """Focus a pane, showing it (and its column) first when hidden."""
        pane_widget = self.query_one(f"#{pane}")
        if not pane_widget.display or not pane_widget.parent.display:
            if pane_widget.display:
                pane_widget.display = False  # shown inside a hidden column: show both
            self.toggle(pane)
        self.query_one(_FOCUS[pane]).focus()
