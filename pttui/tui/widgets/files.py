"""The files pane: checkpoints in a folder (recognised by content), subfolders to enter.

It lists its folder itself: the names at once when that is quick, else from a worker,
then the full reading (marks, tensor counts) from a guarded child. Each listing is a
FolderRead that the pane shows and that bubbles on to the screen, which opens the file
it selects.
"""

from __future__ import annotations

import os
import threading
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker

from pttui.core.base import ReadError
from pttui.tui import errors
from pttui.tui.messages import FolderRead
from pttui.tui.render import file_label

QUICK_LIST_S = 0.05  # a listing this quick is done before the first frame


class FilesPane(Vertical):
    """Posts Chosen for a checkpoint, FolderChosen for a folder or ``..``."""

    ALLOW_MAXIMIZE = True  # `z` maximises the pane, not the widget inside it

    class Chosen(Message):
        def __init__(self, entry) -> None:
            super().__init__()
            self.entry = entry

    class FolderChosen(Message):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder = ""
        self.entries: list = []
        self._width = 0  # the width the labels were cut for
        self.names_shown = threading.Event()  # the first listing is on the screen

    def list_at_once(self, folder: str, select: str | None) -> FolderRead | None:
        """The folder's sniffed listing, shown, if it takes under QUICK_LIST_S: then the
        names are in the first frame. A listing thread would need ~100 ms for the same 2 ms
        of work, as it waits for the GIL at each file while the first frame is drawn. None
        when it is slow (many files, a network disk) or fails: the worker lists it and
        reports the error."""
        from pttui.core.read import list_folder

        self.loading_folder(folder)
        try:
            names = list_folder(folder, examine=False, deadline=time.monotonic() + QUICK_LIST_S)
        except (TimeoutError, ReadError):
            return None
        message = FolderRead(folder, names, select, None)
        self.on_folder_read(message)
        return message

    @work(thread=True, exclusive=True, group="folder", exit_on_error=False)
    def read(self, folder: str, select: str | None = None, open_it: bool = True,
             listed: bool = False) -> None:
        """List ``folder``; ``select`` is highlighted, and opened unless ``open_it`` is False
        (a file opened elsewhere, by `:open`, only needs the list to follow it). ``listed``:
        the names are shown already, only the full reading is left to do."""
        from pttui.core.guard import list_guarded
        from pttui.core.read import list_folder

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
        self.show(message.folder, message.entries, message.select, message.error)
        self.call_after_refresh(self.names_shown.set)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        errors.report(self, event)

    def _label_width(self) -> int:
        """Columns a label may use: the list's width less its scrollbar."""
        ol = self.query_one(OptionList)
        return max(0, ol.size.width - ol.styles.scrollbar_size_vertical)

    def on_resize(self) -> None:
        width = self._label_width()
        if width == self._width or not self.entries:
            return
        self._width = width
        ol = self.query_one(OptionList)
        for i in range(ol.option_count):
            oid = ol.get_option_at_index(i).id
            if oid and oid.isdigit():
                ol.replace_option_prompt_at_index(i, file_label(self.entries[int(oid)], width))

    def compose(self) -> ComposeResult:
        yield Static("", id="files-where")
        yield OptionList(id="files-list")

    def loading_folder(self, folder: str) -> None:
        self.folder = folder
        self.query_one("#files-where", Static).update(Text(_short(folder) + "  (reading…)"))
        self.query_one(OptionList).clear_options()

    def show(self, folder: str, entries: list, selected: str | None = None,
             error: str | None = None) -> None:
        self.folder, self.entries = folder, entries
        where = Text(_short(folder))
        if error:
            where.append("\n" + error, style="red")
        self.query_one("#files-where", Static).update(where)
        ol = self.query_one(OptionList)
        keep = ol.highlighted  # a second, fuller listing keeps the user's place
        ol.clear_options()
        options = []
        if os.path.dirname(folder) != folder:
            options.append(Option(Text("../", style="bold"), id="up"))
        self._width = width = self._label_width()
        for i, e in enumerate(entries):
            options.append(Option(file_label(e, width), id=str(i)))
        ol.add_options(options)
        if not entries:
            ol.add_option(Option(Text("no checkpoints here", style="dim"), id="none",
                                 disabled=True))
        want = next((i for i, e in enumerate(entries)
                     if selected and os.path.abspath(e.path) == os.path.abspath(selected)), None)
        first = 1 if options and options[0].id == "up" else 0
        if want is not None:
            ol.highlighted = want + first
        elif keep is not None and keep < ol.option_count:
            ol.highlighted = keep
        elif entries:  # the cursor on the first file: the first Down moves it
            ol.highlighted = first

    def follow(self, path: str) -> None:
        """List the folder of a file opened by a command, with that file highlighted."""
        if not self.folder or self.entry_for(os.path.abspath(path)) is not None:
            return  # listed already (a sharded set or DCP folder opens from its parent)
        folder = os.path.dirname(os.path.abspath(path.rstrip("/")))
        if os.path.abspath(self.folder) != folder:
            self.loading_folder(folder)
            self.read(folder, path, open_it=False)

    def entry_for(self, path: str):
        return next((e for e in self.entries if os.path.abspath(e.path) == path), None)

    @on(OptionList.OptionSelected, "#files-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id
        if oid == "up":
            self.post_message(self.FolderChosen(os.path.dirname(self.folder)))
        elif oid and oid.isdigit():
            entry = self.entries[int(oid)]
            if entry.is_dir:
                self.post_message(self.FolderChosen(entry.path))
            else:
                self.post_message(self.Chosen(entry))


def _short(path: str) -> str:
    """The folder as the user thinks of it: relative to where pttui started, or ~/..."""
    cwd = os.getcwd()
    if path == cwd:
        return "."
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home != "/" and path.startswith(home + os.sep) else path
