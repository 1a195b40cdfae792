"""The main screen's actions: each opens a flow's dialog or applies one op to the Session.

A mixin for MainScreen (kept apart so each file stays small). Decisions live in
core: the ops come from ``pttui.core.recipe.recipe``, the keys a row stands for from
``pttui.core.read.keyfilter``.
"""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text

from pttui.core.read import keyfilter as kf
from pttui.core.base.meta import ReadError
from pttui.core.recipe.recipe import AcceptMissing, Drop, Op, SelectContainer
from pttui.tui.screens.confirm import ConfirmScreen

_NOT_IN_FILE = ("missing", "accepted", "auto")


class Actions:
    """Mixed into MainScreen; uses its ``session``, ``analysis`` and panes."""

    session: Any
    analysis: Any
    last_load: Any
    unreadable: tuple[str, str] | None
    exported_recipe: Any

    # -- guards ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "undo":
            return True if self.session.can_undo else None
        if action == "redo":
            return True if self.session.can_redo else None
        return True

    def _need(self, file: bool = True, target: bool = False) -> bool:
        if file and self.session.source is None:
            if self.unreadable is not None:
                self.notify(f"{os.path.basename(self.unreadable[0])} could not be read: only "
                            "a load attempt (l) applies to it", severity="warning")
            else:
                self.notify("open a checkpoint first (Files pane, enter)", severity="warning")
            return False
        if target and self.session.target is None:
            self.notify("choose the model first (m)", severity="warning")
            return False
        return True

    def apply_op(self, op: Op, done: str = "") -> None:
        try:
            self.session.apply(op)
        except ReadError as err:
            self.notify(str(err), title="not applied", severity="error", timeout=8)
            return
        self.notify((done or op.describe()) + " (u undoes)")

    def confirm_discard(self, then: Any) -> None:
        n = len(self.session.recipe.ops)
        body = Text(f"The recipe for the open file has {n} step{'s' if n != 1 else ''}; "
                    "opening another file starts a new one. Export first (e) to keep it.")

        def answer(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen("Discard the recipe?", body, yes="Open"), answer)

    # -- flows ----------------------------------------------------------------------------

    def action_filter(self) -> None:
        if self._need():
            from pttui.tui.widgets.keytree import KeyTreePane

            self.query_one(KeyTreePane).open_filter()

    def action_target(self) -> None:
        from pttui.tui.screens.target import TargetScreen

        t = self.session.target
        screen = TargetScreen(t.spec if t else "", t.args if t else None)

        def chosen(target: Any) -> None:
            if target is not None:
                self.set_target(target)

        self.app.push_screen(screen, chosen)

    def action_fix(self) -> None:
        if not self._need(target=True):
            return
        from pttui.tui.screens.wizard import WizardScreen

        def closed(result: str | None) -> None:
            if result == "export":
                self.action_export()

        self.app.push_screen(WizardScreen(self.session, self.set_target), closed)

    def action_load(self, unsafe: bool = False) -> None:
        from pttui.tui.screens.load import LoadScreen

        src = self.session.source
        if src is None and self.unreadable is not None:
            path, scan = self.unreadable[0], None  # torch.load says what the reader could not
        elif not self._need():
            return
        else:
            path, scan = src.path, src.globals

        def closed(answer: Any) -> None:
            if not answer:
                return
            result, policy, open_path = answer
            if result is not None:
                self.last_load = result
            if policy != self.session.policy:
                self.session.set_policy(policy)
                self.query_one("#devices").show(map_location=policy.map_location)
            self._show_report()
            if open_path:  # the tensors an unsafe load saved: list their folder, open them
                self.read_folder(os.path.dirname(open_path), select=open_path)

        self.app.push_screen(LoadScreen(path, self.session.policy, scan, unsafe), closed)

    def action_unsafe_load(self) -> None:
        self.action_load(unsafe=True)

    def action_export(self) -> None:
        if not self._need():
            return
        from pttui.tui.screens.export import ExportScreen

        report = self.analysis.report if self.analysis is not None else None
        recipe = self.session.recipe

        def closed(result: Any) -> None:
            if result is not None:
                self.exported_recipe = recipe  # opening another file loses nothing now
                self.action_refresh()  # the new file shows in the Files pane

        self.app.push_screen(
            ExportScreen(self.session.source, self.session.recipe_for_file(), report), closed)

    def action_container(self) -> None:
        if not self._need():
            return
        src = self.session.source
        if len(src.containers) < 2:
            self.notify("this file holds one container only")
            return
        from pttui.tui.screens.container import ContainerScreen

        best = None
        if self.session.target is not None:
            from pttui.core.repair.diagnose.diagnosis import best_container

            best = tuple(best_container(src, self.session.target)[0])
        current = tuple(self.session.recipe.container or src.selected or ())

        def chosen(path: tuple[str, ...] | None) -> None:
            if path is not None and path != current:
                self.apply_op(SelectContainer(path))

        self.app.push_screen(ContainerScreen(src.containers, current, best), chosen)

    # -- manual ops -------------------------------------------------------------------------

    def _row(self) -> Any:
        from pttui.tui.widgets.keytree import KeyTreePane

        return self.query_one(KeyTreePane).selected_row()

    def action_rename(self) -> None:
        if not self._need():
            return
        row = self._row()
        pattern = repl = ""
        if row is not None and row.status not in _NOT_IN_FILE:
            from pttui.core.repair.guide import rename_seed

            pattern, repl = rename_seed(row)
        self._pattern("rename", pattern, repl)

    def action_drop_pattern(self) -> None:
        if self._need():
            self._pattern("drop")

    def _pattern(self, mode: str, pattern: str = "", repl: str = "") -> None:
        from pttui.tui.screens.pattern import PatternScreen

        s = self.session
        screen = PatternScreen(mode, s.source, s.recipe, s.target, pattern, repl)

        def chosen(op: Op | None) -> None:
            if op is not None:
                self.apply_op(op)

        self.app.push_screen(screen, chosen)

    def action_drop(self) -> None:
        if not self._need():
            return
        row = self._row()
        if row is None or self.analysis is None:
            self.notify("select a key or group in the key tree first", severity="warning")
            return
        if row.status in _NOT_IN_FILE:
            self.notify("that key is not in the file; nothing to drop", severity="warning")
            return
        self.apply_op(Drop(kf.drop_pattern(row), kind="regex"),
                      f"dropped {row.count:,} key{'s' if row.count != 1 else ''}")

    def action_accept(self) -> None:
        if not self._need(target=True) or self.analysis is None:
            return
        row = self._row()
        idx = self.analysis.index
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
                self.apply_op(AcceptMissing(tuple(keys)))

        self.app.push_screen(ConfirmScreen("Accept missing keys?", body,
                                           yes=f"Leave {len(keys)} uninitialised"), answer)

    def action_undo(self) -> None:
        if not self.session.undo():
            self.notify("nothing to undo")

    def action_redo(self) -> None:
        if not self.session.redo():
            self.notify("nothing to redo")

    def show_details(self, row: Any) -> None:
        from pttui.tui.screens.details import DetailsScreen

        a, src = self.analysis, self.session.source
        if a is None or src is None or row.node.tensor is None:
            return
        meta = row.node.tensor
        stored = None
        if row.status not in _NOT_IN_FILE:
            try:
                stored = self.session.recipe.select(src).get(meta.key)
            except ReadError:
                stored = None
        self.app.push_screen(DetailsScreen(row.key, meta, stored, src, row.status,
                                           a.index.model_shape.get(row.key)))

    # -- panes ------------------------------------------------------------------------------

    def action_toggle(self, pane: str) -> None:
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

    def action_focus_pane(self, pane: str) -> None:
        target = {"files": "#files-list", "keys": "#key-tree", "report": "#report"}[pane]
        w = self.query_one(target)
        pane_widget = self.query_one(f"#{pane}")
        if not pane_widget.display or not pane_widget.parent.display:
            if pane_widget.display:
                pane_widget.display = False  # shown inside a hidden column: show both
            self.action_toggle(pane)
        w.focus()

    def action_maximize_pane(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    def action_refresh(self) -> None:
        from pttui.tui.widgets.files import FilesPane

        files = self.query_one(FilesPane)
        src = self.session.source
        path = src.path if src is not None else self.unreadable[0] if self.unreadable else None
        self.read_folder(files.folder, path)

    def action_command(self) -> None:
        from pttui.tui.widgets.commandbar import CommandBar

        self.query_one(CommandBar).open()
