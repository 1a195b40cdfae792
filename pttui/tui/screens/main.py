"""The main screen: files, key tree, devices and report panes over one Session.

Everything slow runs in a thread worker that posts a message back: reading the
folder, opening a file, analysing the session (compare, suggest, index the keys),
building the model, polling devices. A result carries the generation it was
started for, so a stale one (the user moved on) is dropped. The actions (flows)
live in ``actions.py``.
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
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker

from pttui.core.base import humanize as hz
from pttui.core.base.meta import ReadError
from pttui.core.session.session import Session
from pttui.tui import errors, keys
from pttui.tui.messages import (Analysed, DevicesPolled, FileOpened, FolderRead, TargetBuilt,
                                VersionsRead)
from pttui.tui.screens.actions import Actions
from pttui.tui.widgets.commandbar import CommandBar
from pttui.tui.widgets.devices import DevicesPane
from pttui.tui.widgets.files import FilesPane
from pttui.tui.widgets.keytree import KeyTree, KeyTreePane
from pttui.tui.widgets.report import ReportPane

NARROW = 100  # columns below which the report and devices panes start hidden
POLL_S = 2.0
FIRST_NAMES_S = 1.0  # the longest the device poll waits for the first listing
QUICK_LIST_S = 0.05  # a listing this quick is done before the first frame
BIG = 20_000  # keys above which a new index is moved out of the garbage collector's way


def _spare_the_gc(keys: int) -> None:
    """A big key map arrives as ~10 objects per key, built with the GC paused: the next
    collections would walk them all on the UI thread (a second's freeze at 100,000 keys).
    They form no reference cycles (refcounting frees them), so freeze them out of it."""
    if keys >= BIG:
        gc.freeze()


def _names_at_once(folder: str) -> list | None:
    """The folder's sniffed listing, if it takes under QUICK_LIST_S: then the names are in
    the first frame. A listing thread would need ~100 ms for the same 2 ms of work, as it
    waits for the GIL at each file while the first frame is drawn. None when it is slow
    (many files, a network disk) or fails: the worker lists it and reports the error."""
    from pttui.core.read.folder import list_folder

    try:
        return list_folder(folder, examine=False, deadline=time.monotonic() + QUICK_LIST_S)
    except (TimeoutError, ReadError):
        return None


def _titled(widget: Any, title: str) -> Any:
    widget.border_title = title
    return widget


class MainScreen(Actions, Screen):
    BINDINGS = keys.bindings()

    def __init__(self, options: Any) -> None:
        super().__init__()
        from pttui.commands import Context
        from pttui.core.load.policy import LoadPolicy

        self.options = options
        self.session = Session(policy=LoadPolicy(map_location=options.map_location))
        self.ctx = Context(self.session)  # the `:` line's view of the same Session
        self.session.listeners.append(self._listener)
        self.names_shown = threading.Event()  # the first listing is on the screen
        self.analysis: Any = None
        self.last_load: Any = None
        self.unreadable: tuple[str, str] | None = None  # (path, why) of a file that failed
        self.exported_recipe: Any = None  # the recipe last exported (nothing to lose)
        self.gen = 0
        self._state: tuple = ()
        self._polling = False
        self._narrow: bool | None = None
        self.first_paint: tuple[float, bool] | None = None  # (perf_counter, torch imported?)

    def compose(self) -> ComposeResult:
        # every pane has its title from the first frame (the Keys pane's names the file)
        with Horizontal(id="panes"):
            with Vertical(id="left"):
                yield _titled(FilesPane(id="files"), "Files")
                yield _titled(DevicesPane(id="devices"), "Devices")
            yield _titled(KeyTreePane(id="keys"), "Keys")
            yield _titled(ReportPane(id="report"), "Report")
        yield CommandBar(self.ctx, id="command-bar")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DevicesPane).show(map_location=self.session.policy.map_location)
        opts = self.options
        self.query_one(FilesPane).loading_folder(opts.folder)
        names = _names_at_once(opts.folder)
        if names is not None:  # in the first frame
            self.on_folder_read(FolderRead(opts.folder, names, opts.select, None))
        self.read_folder(opts.folder, opts.select, listed=names is not None)
        self.query_one("#files-list").focus()
        self.set_timer(FIRST_NAMES_S, self._after_names_shown)  # if the listing is slow

    def _after_names_shown(self) -> None:
        """Only once the file names are on the screen (or FIRST_NAMES_S passed) start what
        imports torch (seconds) or psutil and NVML (a quarter of a second, holding the
        GIL): started earlier, it slows the listing thread that the names wait for."""
        if self.first_paint is not None:
            return
        self.first_paint = (time.perf_counter(), "torch" in sys.modules)
        self.poll_devices()
        self.set_interval(POLL_S, self.poll_devices)
        self.read_versions()
        if self.options.model:
            self.build_target(self.options.model, dict(self.options.model_args))

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.query_one("#report").display = not narrow
            self.query_one("#devices").display = not narrow
            self.set_class(narrow, "-narrow")

    def _keys_title(self) -> None:
        """The Keys pane names the open file (or the one that could not be read)."""
        src = self.session.source
        path = src.path if src is not None else self.unreadable[0] if self.unreadable else ""
        self.query_one(KeyTreePane).name_file(os.path.basename(path.rstrip("/")))

    # -- the folder and the file ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="folder", exit_on_error=False)
    def read_folder(self, folder: str, select: str | None = None, open_it: bool = True,
                    listed: bool = False) -> None:
        """List ``folder``; ``select`` is highlighted, and opened unless ``open_it`` is False
        (a file opened elsewhere, by `:open`, only needs the list to follow it). ``listed``:
        the names are shown already, only the full reading is left to do."""
        from pttui.core.read.folder import list_folder
        from pttui.core.guard.readguard import list_guarded

        try:
            # names and formats at once, then the full reading (marks, tensor counts),
            # which takes seconds in a folder of 100,000-key files
            if not listed:
                self.post_message(FolderRead(folder, list_folder(folder, examine=False),
                                             select, None, refresh=not open_it))
            # the reading child (seconds of CPU in a folder of big files) waits until the
            # names are painted: on two cores it would otherwise share them with the paint
            self.names_shown.wait(2.0)
            self.post_message(FolderRead(folder, list_guarded(folder), None, None, refresh=True))
        except ReadError as err:
            self.post_message(FolderRead(folder, [], select, str(err)))

    def on_folder_read(self, message: FolderRead) -> None:
        self.query_one(FilesPane).show(message.folder, message.entries, message.select,
                                       message.error)
        self.call_after_refresh(self.names_shown.set)
        self.call_after_refresh(self._after_names_shown)
        if message.refresh:
            return
        if message.select:
            self.open_file(message.select)
        elif self.session.source is None:
            self.query_one(KeyTreePane).show(None, "choose a file in the Files pane (enter)")

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_file(self, path: str) -> None:
        from pttui.core.guard.readguard import open_guarded

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
            self.query_one(KeyTreePane).show(None, Text(
                "cannot read it (why: Report pane, F4) · l tries torch.load", style="red"))
            self.query_one(DevicesPane).show(nbytes=None)
            self._show_report()
            self._keys_title()
            return
        ckpt = message.ckpt
        _spare_the_gc(sum(len(c.tensors) for c in ckpt.containers))
        old = self.session.source
        again = old is not None and old.path == ckpt.path  # F5, or after an export
        self.unreadable = None
        self.session.set_source(ckpt)
        self._keys_title()
        if len(ckpt.containers) > 1:
            self.notify(f"{len(ckpt.containers)} candidate containers; using "
                        f"{'.'.join(ckpt.selected or ()) or '(root)'} (c to choose)")
        if not again:  # reading the same file again leaves the focus where the user is
            self.query_one(KeyTree).focus()

    # -- analysis -------------------------------------------------------------------------

    # -- the `:` line --------------------------------------------------------------------

    def on_command_bar_asked(self, message: CommandBar.Asked) -> None:
        self.query_one("#key-tree").focus()
        line, bar = message.line, self.query_one(CommandBar)
        if not line:
            return
        if line.split(maxsplit=1)[0] == "open" and self.session.recipe.ops \
                and self.session.recipe is not self.exported_recipe:
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
        if state != self._state:
            if session.source is not None and (not self._state
                                               or session.source is not self._state[0]):
                self._follow_folder(session.source.path)
            self._state = state
            self.gen += 1
            if session.source is not None:
                self.query_one(KeyTreePane).message = "analysing…"
                self.analyse(self.gen)
        self._show_report()
        self._keys_title()  # a `:open` changes the file without passing on_file_opened
        self.refresh_bindings()

    def _follow_folder(self, path: str) -> None:
        """Show the folder of a file opened by a command, with that file highlighted."""
        pane = self.query_one(FilesPane)
        if not pane.folder or pane.entry_for(os.path.abspath(path)) is not None:
            return  # listed already (a sharded set or DCP folder opens from its parent)
        folder = os.path.dirname(os.path.abspath(path.rstrip("/")))
        if os.path.abspath(pane.folder) != folder:
            pane.loading_folder(folder)
            self.read_folder(folder, path, open_it=False)

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
        self.query_one(DevicesPane).show(nbytes=a.nbytes)
        self._show_report()

    def _show_report(self) -> None:
        self.query_one(ReportPane).show(self.session, self.analysis, self.last_load,
                                        self.unreadable)

    # -- the model ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="target", exit_on_error=False)
    def build_target(self, spec: str, args: dict) -> None:
        from pttui.core.target.targets import load_target

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

    # -- devices ----------------------------------------------------------------------------

    def poll_devices(self) -> None:
        """A timer tick: skipped while the last poll still runs."""
        if not self._polling:
            self._polling = True
            self._poll()

    @work(thread=True, group="devices", exit_on_error=False)
    def _poll(self) -> None:
        try:
            snap = self.app.device_source()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - devices never take the app down
            snap = None
        self.post_message(DevicesPolled(snap))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        text = errors.report(self, event)
        if text is None:
            return
        if event.worker.group == "devices":
            self._polling = False
        elif event.worker.group == "analyse":
            self.query_one(KeyTreePane).show(None, text)

    def on_devices_polled(self, message: DevicesPolled) -> None:
        self._polling = False
        if message.snapshot is not None:
            self.query_one(DevicesPane).show(message.snapshot)

    @work(thread=True, group="versions", exit_on_error=False)
    def read_versions(self) -> None:
        """torch's versions (importing torch takes seconds), then torchvision's model
        names for the picker and the palette."""
        self.post_message(VersionsRead(self.app.versions_source()))  # type: ignore[attr-defined]
        if getattr(self.app, "torchvision_names", None) is None:
            from pttui.core.target.targets import torchvision_models

            self.app.torchvision_names = torchvision_models()  # type: ignore[attr-defined]

    def on_versions_read(self, message: VersionsRead) -> None:
        self.query_one(DevicesPane).show(versions=message.versions)

    # -- panes ------------------------------------------------------------------------------

    @on(FilesPane.Chosen)
    def _file_chosen(self, message: FilesPane.Chosen) -> None:
        entry = message.entry
        src = self.session.source
        if src is not None and os.path.abspath(src.path) == os.path.abspath(entry.path):
            self.query_one(KeyTree).focus()
            return
        if src is not None and self.session.recipe.ops \
                and self.session.recipe is not self.exported_recipe:
            self.confirm_discard(lambda: self.open_file(entry.path))
        else:
            self.open_file(entry.path)

    @on(FilesPane.FolderChosen)
    def _folder_chosen(self, message: FilesPane.FolderChosen) -> None:
        self.query_one(FilesPane).loading_folder(message.path)
        self.read_folder(message.path)

    @on(KeyTreePane.LeafChosen)
    def _leaf(self, message: KeyTreePane.LeafChosen) -> None:
        self.show_details(message.row)
