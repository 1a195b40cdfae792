"""The main screen's four panes side by side: which show, at which width, which has
the focus. The Files and Devices panes share the left column; on a narrow terminal
(under NARROW columns) the Report and Devices panes start hidden and one side column
shows at a time."""

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
            self.query_one("#report").display = not narrow
            self.query_one("#devices").display = not narrow
            self.set_class(narrow, "-narrow")

    def toggle(self, pane: str) -> None:
        """Show or hide a pane; on a narrow terminal one side pane shows at a time."""
        w = self.query_one(f"#{pane}")
        w.display = not w.display
        left = self.query_one("#left")
        narrow = self.has_class("-narrow")
        if w.display and narrow:
            if pane == "report":
                left.display = False
            else:
                self.query_one("#report").display = False
        left.display = (self.query_one("#files").display or self.query_one("#devices").display) \
            and not (narrow and self.query_one("#report").display)

    def focus_pane(self, pane: str) -> None:
        """Focus a pane, showing it (and its column) first when hidden."""
        pane_widget = self.query_one(f"#{pane}")
        if not pane_widget.display or not pane_widget.parent.display:
            if pane_widget.display:
                pane_widget.display = False  # shown inside a hidden column: show both
            self.toggle(pane)
        self.query_one(_FOCUS[pane]).focus()
