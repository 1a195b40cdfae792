"""The key tree pane: groups fill in when expanded, a chunk at a time; ``/`` filters;
the ops on the selected row (rename, drop, transpose, accept missing, details) start here.

All the work (which rows, which counts, which keys match) is done by
``pttui.core.read.keyfilter``; the ops come from ``pttui.core.recipe.recipe``; this
widget turns rows into tree nodes and a row into an op.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static, Tree
from textual.widgets.tree import TreeNode

from pttui.core.base import ReadError
from pttui.core.read import keyfilter as kf
from pttui.core.recipe import AcceptMissing, Drop
from pttui.tui.render import STATUS_STYLE, STATUS_WORD, key_row
from pttui.tui.steps import apply_op, need

NOT_IN_FILE = ("missing", "accepted", "auto")  # rows of model keys the file lacks
CHUNK = 200  # nodes added per expansion; the rest behind a "more" line
AUTO_EXPAND = 40  # a filter matching at most this many keys shows them all


@dataclass
class NodeData:
    row: kf.Row | None = None  # None: a "more" line
    pending: Iterator[kf.Row] | None = None
    filled: bool = False


class KeyTree(Tree[NodeData]):
    BINDINGS = [Binding("right", "open_node", "Expand", show=False),
                Binding("left", "close_node", "Collapse", show=False)]

    def action_open_node(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()

    def action_close_node(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and not node.parent.is_root:
            self.move_cursor(node.parent)


class KeyTreePane(Vertical):
    """Shows the KeyIndex of the session's analysis; enter on a key shows its details."""

    ALLOW_MAXIMIZE = True  # `z` maximises the pane, not the widget inside it

    def __init__(self, session, **kwargs) -> None:  # noqa: ANN001 - a Session
        super().__init__(**kwargs)
        self.session = session
        self.index: kf.KeyIndex | None = None
        self.matched: list[str] | None = None
        self._last: tuple[kf.KeyFilter, list[str]] | None = None
        self._open: set[str] = set()
        self._by_key: dict[str, TreeNode[NodeData]] = {}
        self._restore: str | None = None
        self.message = "no file open"
        self.last_ms = 0.0  # the last expansion or filter keystroke, for measurements
        self.file_name = ""  # the open file, named in the border title

    def name_file(self, name: str) -> None:
        self.file_name = name
        self._title()

    def on_resize(self) -> None:
        self._title()

    def _title(self) -> None:
        """``Keys · NAME``, the name cut in the middle to fit the border."""
        from pttui.tui.render import middle

        if not self.file_name:
            self.border_title = "Keys"
            return
        room = max(8, self.size.width - 12) if self.size.width else 60
        self.border_title = Text.assemble("Keys · ", (middle(self.file_name, room), "bold"))

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: substring, or a glob like *.bias", id="key-filter")
        yield KeyTree(Text("keys"), id="key-tree")
        yield Static("", id="key-status")

    def on_mount(self) -> None:
        tree = self.query_one(KeyTree)
        tree.show_root = False
        tree.guide_depth = 2
        self.query_one("#key-filter").display = False
        self._status()

    # -- public -----------------------------------------------------------------------

    def show(self, index: kf.KeyIndex | None, message: str | Text = "") -> None:
        """Show ``index`` with ``message`` as its summary line (or alone, without an
        index), keeping open groups and the cursor where they were."""
        tree = self.query_one(KeyTree)
        if tree.cursor_node is not None and tree.cursor_node.data is not None \
                and tree.cursor_node.data.row is not None:
            self._restore = tree.cursor_node.data.row.key
        self.index, self.message = index, message
        flt = self.filter_text
        self._last = None
        self.matched = kf.matching(index, kf.KeyFilter(flt)) if index and flt else None
        self._rebuild()

    @property
    def filter_text(self) -> str:
        return self.query_one("#key-filter", Input).value

    def open_filter(self) -> None:
        box = self.query_one("#key-filter", Input)
        box.display = True
        box.focus()

    def selected_row(self) -> kf.Row | None:
        node = self.query_one(KeyTree).cursor_node
        return node.data.row if node is not None and node.data is not None else None

    # -- filtering --------------------------------------------------------------------

    @on(Input.Changed, "#key-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)

    def set_filter(self, text: str) -> None:
        if self.index is None:
            return
        t0 = time.perf_counter()
        flt = kf.KeyFilter(text)
        self.matched = kf.matching(self.index, flt, self._last)
        self._last = (flt, self.matched) if self.matched is not None else None
        self._rebuild()
        self.last_ms = (time.perf_counter() - t0) * 1000

    @on(Input.Submitted, "#key-filter")
    def _filter_done(self) -> None:
        self.query_one(KeyTree).focus()

    def key_escape(self) -> None:
        box = self.query_one("#key-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one(KeyTree).focus()

    # -- building -----------------------------------------------------------------------

    def _rebuild(self) -> None:
        tree = self.query_one(KeyTree)
        tree.clear()
        self._by_key.clear()
        if self.index is not None:
            it = kf.rows(self.index, self.index.root, self.matched)
            few = self.matched is not None and len(self.matched) <= AUTO_EXPAND
            self._fill(tree.root, it, open_all=few)
            self.call_after_refresh(self._cursor_home)
        self._status()

    def _cursor_home(self) -> None:
        tree = self.query_one(KeyTree)
        if tree.cursor_line < 0 and tree.root.children:
            tree.cursor_line = 0

    def _fill(self, parent: TreeNode[NodeData], it: Iterator[kf.Row],
              open_all: bool = False) -> None:
        """Add up to CHUNK rows under ``parent``; ``open_all`` fills and opens every group
        below now (a filter with few matches shows them all)."""
        assert self.index is not None
        chunk = list(itertools.islice(it, CHUNK + 1))
        filtered = self.matched is not None
        for row in chunk[:CHUNK]:
            label = key_row(row, self.index.model_shape, filtered)
            if row.is_leaf:
                node = parent.add_leaf(label, NodeData(row, filled=True))
            else:
                node = parent.add(label, NodeData(row))
            self._by_key.setdefault(row.key, node)
            if row.key == self._restore:
                self._restore = None
                self.call_after_refresh(self._move_to, node)
            if not row.is_leaf and not filtered and row.key in self._open:
                node.expand()
            elif not row.is_leaf and open_all:
                node.data.filled = True
                self._fill(node, kf.rows(self.index, row.node, self.matched), open_all=True)
                node.expand()
        if len(chunk) > CHUNK:
            rest = itertools.chain(chunk[CHUNK:], it)
            parent.add_leaf(Text("… more (enter)", style="italic dim"), NodeData(None, rest))

    def _move_to(self, node: TreeNode[NodeData]) -> None:
        tree = self.query_one(KeyTree)
        if node.tree is tree and node.line >= 0:
            tree.move_cursor(node)

    @on(Tree.NodeExpanded, "#key-tree")
    def _expanded(self, event: Tree.NodeExpanded[NodeData]) -> None:
        data = event.node.data
        if data is None or data.row is None:
            return
        if self.matched is None:
            self._open.add(data.row.key)
        if not data.filled and self.index is not None:
            t0 = time.perf_counter()
            data.filled = True
            self._fill(event.node, kf.rows(self.index, data.row.node, self.matched))
            self.last_ms = (time.perf_counter() - t0) * 1000

    @on(Tree.NodeCollapsed, "#key-tree")
    def _collapsed(self, event: Tree.NodeCollapsed[NodeData]) -> None:
        data = event.node.data
        if data is not None and data.row is not None and self.matched is None:
            self._open.discard(data.row.key)

    @on(Tree.NodeSelected, "#key-tree")
    def _selected(self, event: Tree.NodeSelected[NodeData]) -> None:
        data = event.node.data
        if data is None:
            return
        if data.row is None and data.pending is not None:
            parent = event.node.parent
            pending, data.pending = data.pending, None
            event.node.remove()
            if parent is not None:
                self._fill(parent, pending)
        elif data.row is not None and data.row.is_leaf:
            self.details(data.row)

    def _status(self) -> None:
        idx = self.index
        if idx is None:
            text = self.message.copy() if isinstance(self.message, Text) else \
                Text(self.message or "no file open", style="dim")
        elif self.matched is not None:
            text = Text(f"filter: {len(self.matched):,} of {len(idx.keys):,} keys",
                        style="bold")
        else:
            text = self.message.copy() if isinstance(self.message, Text) else \
                Text(self.message, style="dim")
            for s, keys in idx.by_status.items():
                if keys and s != "ok":
                    text.append(f" · {len(keys)} {STATUS_WORD.get(s, s)}",
                                style=STATUS_STYLE.get(s, ""))
        self.query_one("#key-status", Static).update(text)

    # -- ops on the selected row ----------------------------------------------------------

    def _need(self, target: bool = False) -> bool:
        return need(self, self.session, self.file_name, target)

    def rename(self) -> None:
        if not self._need():
            return
        row = self.selected_row()
        pattern = repl = ""
        if row is not None and row.status not in NOT_IN_FILE:
            from pttui.core.repair import rename_seed

            pattern, repl = rename_seed(row)
        self._pattern("rename", pattern, repl)

    def drop_pattern(self) -> None:
        if self._need():
            self._pattern("drop")

    def _pattern(self, mode: str, pattern: str = "", repl: str = "") -> None:
        from pttui.tui.screens.pattern import PatternScreen

        s = self.session
        screen = PatternScreen(mode, s.source, s.recipe, s.target, pattern, repl)

        def chosen(op) -> None:  # noqa: ANN001 - an Op or None
            if op is not None:
                apply_op(self, s, op)

        self.app.push_screen(screen, chosen)

    def drop(self) -> None:
        if not self._need():
            return
        row = self.selected_row()
        if row is None or self.index is None:
            self.notify("select a key or group in the key tree first", severity="warning")
            return
        if row.status in NOT_IN_FILE:
            self.notify("that key is not in the file; nothing to drop", severity="warning")
            return
        apply_op(self, self.session, Drop(kf.drop_pattern(row), kind="regex"),
                 f"dropped {row.count:,} key{'s' if row.count != 1 else ''}")

    def transpose(self) -> None:
        """Swap dims 0 and 1 of the selected 2-D tensors (a key, or a group's)."""
        if not self._need():
            return
        row = self.selected_row()
        if row is None or self.index is None or row.status in NOT_IN_FILE:
            self.notify("select a key or group of the file in the key tree first",
                        severity="warning")
            return
        from pttui.core.recipe import Transpose

        pattern = kf.drop_pattern(row)
        current = self.session.current()
        rx = re.compile(pattern)
        flat = [k for k, m in current.items() if rx.search(k) and len(m.shape) != 2]
        if row.is_leaf and flat:
            self.notify(f"{row.key} is not 2-D; the : line's `transpose --dims` swaps "
                        "other dims", severity="warning")
            return
        if flat:  # a group: its 2-D weights only
            keys = [k for k, m in current.items() if rx.search(k) and len(m.shape) == 2]
            if not keys:
                self.notify("no 2-D tensors there to transpose", severity="warning")
                return
            pattern = "^(?:" + "|".join(re.escape(k) for k in keys) + ")$"
        apply_op(self, self.session, Transpose(pattern, "regex"),
                 f"transposed {row.count:,} key{'s' if row.count != 1 else ''}"
                 if not flat else "transposed the group's 2-D tensors")

    def accept(self) -> None:
        if not self._need(target=True) or self.index is None:
            return
        from pttui.tui.screens.confirm import ConfirmScreen

        row, idx = self.selected_row(), self.index
        keys = kf.row_keys(idx, row, "missing") if row is not None else \
            list(idx.by_status.get("missing", []))
        if not keys:
            self.notify("no missing keys there", severity="warning")
            return
        body = Text(f"Load with strict=False; these {len(keys)} model keys stay at the "
                    "model's initialisation:\n\n", style="bold")
        for key in keys:  # every one: exactly what stays uninitialised
            body.append(Text("  " + key + "\n", style="cyan"))

        def answer(yes: bool | None) -> None:
            if yes:
                apply_op(self, self.session, AcceptMissing(tuple(keys)))

        self.app.push_screen(ConfirmScreen("Accept missing keys?", body,
                                           yes=f"Leave {len(keys)} uninitialised"), answer)

    def details(self, row: kf.Row) -> None:
        """The key's details: its shape and dtype, the model's, and its values' stats."""
        from pttui.tui.screens.details import DetailsScreen

        src = self.session.source
        if self.index is None or src is None or row.node.tensor is None:
            return
        stored = None
        if row.status not in NOT_IN_FILE:
            try:
                stored = self.session.recipe.select(src).get(row.node.tensor.key)
            except ReadError:
                stored = None
        self.app.push_screen(DetailsScreen(row.key, row.node.tensor, stored, src, row.status,
                                           self.index.model_shape.get(row.key)))
