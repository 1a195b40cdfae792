"""The files pane: checkpoints in a folder (recognised by content), subfolders to enter."""

from __future__ import annotations

import os

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from pttui.tui.render import file_label


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
        if want is not None:
            ol.highlighted = want + (1 if options and options[0].id == "up" else 0)
        elif keep is not None and keep < ol.option_count:
            ol.highlighted = keep

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
