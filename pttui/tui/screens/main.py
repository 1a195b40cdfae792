"""The main screen: files, key tree, devices and report panes over one Session.

Everything slow runs in a thread worker that posts a message back: reading the
folder, opening a file, analysing the session (compare, suggest, index the keys),
building the model, polling devices. A result carries the generation it was
started for, so a stale one (the user moved on) is dropped.

The keys' actions are the flows: each opens its dialog and hands what the user chose
to the Session. The ops on one key live with the key tree (its pane), the layout with
the panes, the device poll with the devices pane; the screen only routes keys there.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker

from pttui.core.base import humanize as hz
from pttui.core.base import ReadError
from pttui.core.session import Session
from pttui.tui import errors, keys
from pttui.tui.messages import Analysed, FileOpened, FolderRead, TargetBuilt
from pttui.tui.screens.confirm import ConfirmScreen
from pttui.tui.steps import need
from pttui.tui.widgets.banner import DangerBanner
from pttui.tui.widgets.commandbar import CommandBar
from pttui.tui.widgets.devices import DevicesPane
from pttui.tui.widgets.files import FilesPane
from pttui.tui.widgets.keytree import KeyTree, KeyTreePane
from pttui.tui.widgets.panes import Panes
from pttui.tui.widgets.report import ReportPane

FIRST_NAMES_S = 1.0  # the longest the device poll waits for the first listing
BIG = 20_000  # keys above which a new index is moved out of the garbage collector's way


def _spare_the_gc(keys: int) -> None:
    """A big key map arrives as ~10 objects per key, built with the GC paused: the next
    collections would walk them all on the UI thread (a second's freeze at 100,000 keys).
    They form no reference cycles (refcounting frees them), so freeze them out of it."""
    if keys >= BIG:
        gc.freeze()


def _titled(widget: Any, title: str) -> Any:
    widget.border_title = title
    return widget


class MainScreen(Screen):
    BINDINGS = keys.bindings()

    def __init__(self, options: Any) -> None:
        super().__init__()
        from pttui.commands import Context
        from pttui.core.load import LoadPolicy

        self.options = options
        self.session = Session(policy=LoadPolicy(map_location=options.map_location))
        self.ctx = Context(self.session)  # the `:` line's view of the same Session
        self.session.listeners.append(self._listener)
        self.analysis: Any = None
        self.last_load: Any = None
        self.unreadable: tuple[str, str] | None = None  # (path, why) of a file that failed
        self.exported_recipe: Any = None  # the recipe last exported (nothing to lose)
        self.model_for: str | None = None  # the file the model was chosen with
        self.gen = 0
        self._state: tuple = ()
        self.first_paint: tuple[float, bool] | None = None  # (perf_counter, torch imported?)

    def compose(self) -> ComposeResult:
        yield DangerBanner(id="danger")
        # every pane has its title from the first frame (the Keys pane's names the file)
        with Panes(id="panes"):
            with Vertical(id="left"):
                yield _titled(FilesPane(id="files"), "Files")
                yield _titled(DevicesPane(id="devices"), "Devices")
            with Container(id="right"):  # side by side; stacked on a narrow terminal
                yield _titled(KeyTreePane(self.session, id="keys"), "Keys")
                yield _titled(ReportPane(id="report"), "Report")
        yield CommandBar(self.ctx, id="command-bar")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DevicesPane).show(map_location=self.session.policy.map_location)
        opts = self.options
        files = self.query_one(FilesPane)
        quick = files.list_at_once(opts.folder, opts.select)  # the names in the first frame
        if quick is not None:
            self.on_folder_read(quick)
        files.read(opts.folder, opts.select, listed=quick is not None)
        self.query_one("#files-list").focus()
        self.set_timer(FIRST_NAMES_S, self._after_names_shown)  # if the listing is slow

    def _after_names_shown(self) -> None:
        """Only once the file names are on the screen (or FIRST_NAMES_S passed) start what
        imports torch (seconds) or psutil and NVML (a quarter of a second, holding the
        GIL): started earlier, it slows the listing thread that the names wait for."""
        if self.first_paint is not None:
            return
        self.first_paint = (time.perf_counter(), "torch" in sys.modules)
        self.query_one(DevicesPane).start()
        if self.options.model:
            self.build_target(self.options.model, dict(self.options.model_args))

    def _keys_title(self) -> None:
        """The Keys pane names the open file (or the one that could not be read)."""
        src = self.session.source
        path = src.path if src is not None else self.unreadable[0] if self.unreadable else ""
        self.query_one(KeyTreePane).name_file(os.path.basename(path.rstrip("/")))

    # -- the folder and the file ------------------------------------------------------------

    def on_folder_read(self, message: FolderRead) -> None:
        """After the Files pane showed it (the message bubbles up from there)."""
        self.call_after_refresh(self._after_names_shown)
        if message.refresh:
            return
        if message.select:
            self.open_file(message.select)
        elif self.session.source is None:
            self.query_one(KeyTreePane).show(None, "choose a file in the Files pane (enter)")

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_file(self, path: str) -> None:
        from pttui.core.guard import open_guarded

        try:
            # first in a child with a deadline: a crafted pickle must not freeze the app
            self.post_message(FileOpened(path, open_guarded(path), None))
        except ReadError as err:
            self.post_message(FileOpened(path, None, str(err)))

    def on_file_opened(self, message: FileOpened) -> None:
        self.last_load = None
        if message.error:
            # The reader gave up; torch.load may still say more (l tries it): keep the
            # file as the one shown, with its error in the Keys and Report panes.
            self.notify(message.error, title="cannot read", severity="error", timeout=8)
            self.unreadable = (message.path, message.error)
            self.analysis = None
            if self.session.source is not None:
                self.session.set_source(None)
            self.query_one(DangerBanner).show(None)
            self.query_one(KeyTreePane).show(None, Text(
                "cannot read it (why: Report pane, F4) · l tries torch.load", style="red"))
            self.query_one(DevicesPane).show(nbytes=None, tensors=None)
            self._show_report()
            self._keys_title()
            return
        ckpt = message.ckpt
        _spare_the_gc(sum(len(c.tensors) for c in ckpt.containers))
        old = self.session.source
        again = old is not None and old.path == ckpt.path  # F5, or after an export
        if not again:
            self.app.clear_notifications()  # the last file's toasts are not about this one
        self.unreadable = None
        self.session.set_source(ckpt)
        self._keys_title()
        if len(ckpt.containers) > 1:
            self.notify(f"{len(ckpt.containers)} candidate containers; using "
                        f"{'.'.join(ckpt.selected or ()) or '(root)'} (c to choose)")
        if not again:  # reading the same file again leaves the focus where the user is
            self.query_one(KeyTree).focus()
        t = self.session.target
        if not again and t is not None and self.model_for is not None \
                and self.model_for != ckpt.path:
            self.notify(f"still comparing with {t.label or t.spec}, the model chosen for "
                        f"{os.path.basename(self.model_for.rstrip('/'))} (m changes it)",
                        title="model kept", timeout=6)

    # -- the `:` line --------------------------------------------------------------------

    def on_command_bar_asked(self, message: CommandBar.Asked) -> None:
        self.query_one("#key-tree").focus()
        line, bar = message.line, self.query_one(CommandBar)
        if not line:
            return
        if line.split(maxsplit=1)[0] == "open" and self.unexported_steps():
            self.confirm_discard(lambda: bar.run(line))  # as the Files pane asks
            return
        bar.run(line)

    def key_escape(self) -> None:
        bar = self.query_one(CommandBar)
        if bar.is_open:
            bar.close()
            self.query_one("#key-tree").focus()
        elif self.maximized is not None:
            self.minimize()
        else:
            bar.cancel()

    def _listener(self, session: Session) -> None:
        """Session changes may come from a `:` command's worker thread."""
        if threading.get_ident() == self.app._thread_id:
            self._session_changed(session)
        else:
            self.app.call_from_thread(self._session_changed, session)

    def _session_changed(self, session: Session) -> None:
        state = (session.source, tuple(map(id, session.recipe.ops)), session.target)
        if session.target is not (self._state[2] if self._state else None):
            # a model chosen (m, :model, the wizard) is the open file's
            self.model_for = session.source.path if session.source is not None else None
        if self.model_for is None and session.target is not None and session.source is not None:
            self.model_for = session.source.path  # given at launch, before the file opened
        if state != self._state:
            if session.source is not None and (not self._state
                                               or session.source is not self._state[0]):
                self.query_one(FilesPane).follow(session.source.path)
            self._state = state
            self.gen += 1
            if session.source is not None:
                self.query_one(KeyTreePane).message = "analysing…"
                self.analyse(self.gen)
        self._show_report()
        self.query_one(DangerBanner).show(session.source)
        devices = self.query_one(DevicesPane)
        if devices.map_location != session.policy.map_location:  # a `:load --map-location`
            devices.show(map_location=session.policy.map_location)
        self._keys_title()  # a `:open` changes the file without passing on_file_opened
        self.refresh_bindings()

    # -- the session's state, analysed ----------------------------------------------------

    @work(thread=True, exclusive=True, group="analyse", exit_on_error=False)
    def analyse(self, gen: int) -> None:
        """The session's analysis of its state (the one the shell and the CLI give)."""
        self.post_message(Analysed(gen, self.session.analysis()))

    def on_analysed(self, message: Analysed) -> None:
        if message.gen != self.gen:
            return
        a = self.analysis = message.analysis
        _spare_the_gc(len(a.index.keys))
        self.ctx.remember(a.suggestions)  # `:apply N` takes step N as the Report numbers it
        cur = a.current
        summary = Text(f"{len(cur):,} keys · {hz.count(sum(t.numel for t in cur.values()))} · "
                       f"{hz.nbytes(a.nbytes)}", style="dim")
        rep = a.report
        if rep is not None:  # the verdict in one word, for when the report pane is hidden
            word, style = (("strict OK", "bold green") if rep.strict_ok else
                           ("strict=False OK", "bold cyan") if rep.ok_with_accepted else
                           ("FAILS", "bold red"))
            summary = Text.assemble(Text(word, style=style), " · ", summary)
        if a.error:
            summary = Text(a.error, style="red")
        self.query_one(KeyTreePane).show(a.index, summary)
        self.query_one(DevicesPane).show(nbytes=a.nbytes, tensors=list(cur.values()))
        self._show_report()

    def _show_report(self) -> None:
        src = self.session.source
        kept = self.model_for if (src is not None and self.model_for is not None
                                  and self.model_for != src.path) else None
        self.query_one(ReportPane).show(self.session, self.analysis, self.last_load,
                                        self.unreadable, kept)

    # -- the model ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="target", exit_on_error=False)
    def build_target(self, spec: str, args: dict) -> None:
        from pttui.core.target import load_target

        try:
            self.post_message(TargetBuilt(load_target(spec, args), None))
        except ReadError as err:
            self.post_message(TargetBuilt(None, str(err)))
        except Exception as err:  # noqa: BLE001 - user code: report it, keep running
            self.post_message(TargetBuilt(None, f"{spec}: {type(err).__name__}: {err}"))

    def on_target_built(self, message: TargetBuilt) -> None:
        if message.error:
            self.notify(message.error, title="model", severity="error", timeout=10)
            return
        self.set_target(message.target)

    def set_target(self, target: Any) -> None:
        self.session.set_target(target)  # the exported recipe names it (recipe_for_file)
        self.notify(f"model: {target.label}", title="model set")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        text = errors.report(self, event)
        if text is not None and event.worker.group == "analyse":
            self.query_one(KeyTreePane).show(None, text)

    # -- panes ------------------------------------------------------------------------------

    @on(FilesPane.Chosen)
    def _file_chosen(self, message: FilesPane.Chosen) -> None:
        entry = message.entry
        src = self.session.source
        if src is not None and os.path.abspath(src.path) == os.path.abspath(entry.path):
            self.query_one(KeyTree).focus()
            return
        if src is not None and self.unexported_steps():
            self.confirm_discard(lambda: self.open_file(entry.path))
        else:
            self.open_file(entry.path)

    @on(FilesPane.FolderChosen)
    def _folder_chosen(self, message: FilesPane.FolderChosen) -> None:
        files = self.query_one(FilesPane)
        files.loading_folder(message.path)
        files.read(message.path)

    # -- the keys' actions -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "undo":
            return True if self.session.can_undo else None
        if action == "redo":
            return True if self.session.can_redo else None
        return True

    def _need(self, target: bool = False) -> bool:
        name = os.path.basename(self.unreadable[0]) if self.unreadable else ""
        return need(self, self.session, name, target)

    def unexported_steps(self) -> int:
        """The recipe's steps, unless it is the one last exported (nothing to lose)."""
        recipe = self.session.recipe
        return len(recipe.ops) if recipe.ops and recipe is not self.exported_recipe else 0

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
            elif result == "model":
                self.action_target()

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
                self.query_one(FilesPane).read(os.path.dirname(open_path), select=open_path)

        self.app.push_screen(LoadScreen(path, self.session.policy, scan, unsafe), closed)

    def action_load_device(self) -> None:
        """``g``: the next place ``l`` loads to (auto, cpu, each GPU, meta)."""
        pane = self.query_one(DevicesPane)
        where = pane.targets()
        now = self.session.policy.map_location
        nxt = where[(where.index(now) + 1) % len(where)] if now in where else where[0]
        self.session.set_policy(self.session.policy.with_changes({"map_location": nxt}))
        pane.show(map_location=nxt)
        self.notify(f"l loads with map_location={nxt!r}", timeout=3)

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
            ExportScreen(self.session.source, self.session.recipe_for_file(), report,
                         self.analysis), closed)

    def action_container(self) -> None:
        if self._need():
            from pttui.tui.screens.container import choose_container

            choose_container(self, self.session)

    def action_rename(self) -> None:
        self.query_one(KeyTreePane).rename()

    def action_drop(self) -> None:
        self.query_one(KeyTreePane).drop()

    def action_drop_pattern(self) -> None:
        self.query_one(KeyTreePane).drop_pattern()

    def action_transpose(self) -> None:
        self.query_one(KeyTreePane).transpose()

    def action_accept(self) -> None:
        self.query_one(KeyTreePane).accept()

    def action_undo(self) -> None:
        if not self.session.undo():
            self.notify("nothing to undo")

    def action_redo(self) -> None:
        if not self.session.redo():
            self.notify("nothing to redo")

    def action_toggle(self, pane: str) -> None:
        self.query_one(Panes).toggle(pane)

    def action_focus_pane(self, pane: str) -> None:
        self.query_one(Panes).focus_pane(pane)

    def action_maximize_pane(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    def action_refresh(self) -> None:
        files = self.query_one(FilesPane)
        src = self.session.source
        path = src.path if src is not None else self.unreadable[0] if self.unreadable else None
        files.read(files.folder, path)

    def action_command(self) -> None:
        self.query_one(CommandBar).open()
