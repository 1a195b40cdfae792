"""The main screen's key bindings, in one table: the Footer, the help screen and the
command palette all read it, so they never disagree."""

from __future__ import annotations

from typing import NamedTuple

from textual.binding import Binding


class Key(NamedTuple):
    key: str
    action: str
    description: str
    show: bool = False
    help: str = ""


KEYS = [
    Key("slash", "filter", "Filter", True, "filter keys: substring, or a glob like *.bias"),
    Key("m", "target", "Model", True, "choose the model the weights are for"),
    Key("f", "fix", "Fix", True, "guided fix-up: one step at a time, with previews"),
    Key("l", "load", "Load", True, "try a real torch.load in a separate process"),
    Key("g", "load_device", "Load to", False, "where l loads: auto, cpu, each GPU, meta "
        "(cycles; the devices pane shows whether the file fits there)"),
    Key("e", "export", "Export", True, "write the repaired weights and the recipe"),
    Key("u", "undo", "Undo", True, "undo the last recipe change"),
    Key("ctrl+r", "redo", "Redo", False, "redo"),
    Key("c", "container", "Container", False, "choose the container (state_dict, EMA, ...)"),
    Key("r", "rename", "Rename", False, "rename keys by regex, with a live preview"),
    Key("d", "drop", "Drop", False, "drop the selected key or group"),
    Key("D", "drop_pattern", "Drop pattern", False, "drop keys matching a pattern"),
    Key("t", "transpose", "Transpose", False, "transpose the selected 2-D key or group "
        "(HF Conv1D <-> nn.Linear); other value ops: the : line (help transpose)"),
    Key("a", "accept", "Accept missing", False, "accept the selected missing keys (strict=False)"),
    Key("colon", "command", "Command", True, "run a pttui command"),
    Key("f2", "toggle('files')", "Files", False, "show or hide the files pane"),
    Key("f3", "toggle('devices')", "Devices", False, "show or hide the devices pane"),
    Key("f4", "toggle('report')", "Report", False, "show or hide the report pane"),
    Key("z", "maximize_pane", "Maximise", False, "maximise the focused pane (escape restores)"),
    Key("1", "focus_pane('files')", "Files", False, "focus the files pane"),
    Key("2", "focus_pane('keys')", "Keys", False, "focus the key tree"),
    Key("3", "focus_pane('report')", "Report", False, "focus the report"),
    Key("f5", "refresh", "Re-read", False, "read the folder and the file again"),
    Key("q", "app.quit", "Quit", False, "quit (asks while a load or export runs, or before an unexported recipe is lost)"),
]

OTHER_KEYS = [
    ("f1 / ?", "help"),
    ("ctrl+p", "command palette: every action, files, models"),
    ("tab / shift+tab", "move between panes"),
    ("enter", "open a file or folder; expand a group; details of a key"),
    ("right / left", "expand / collapse a group"),
    ("escape", "close a dialog; clear the filter; restore a maximised pane"),
]


def bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.description, show=k.show) for k in KEYS]


def label(key: str) -> str:
    """How a key reads in help text."""
    return {"slash": "/", "colon": ":", "question_mark": "?"}.get(key, key)
