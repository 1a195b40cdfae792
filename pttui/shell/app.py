"""The interactive shell: a prompt_toolkit prompt over the command language.

Thin on purpose: it reads a line, runs it in a worker thread (Ctrl-C interrupts, the
session survives), prints the result with rich, and shows the session in a bottom
toolbar. Everything a command does lives in pttui.commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import History
from rich.console import Console

from pttui.commands.complete import ModelCatalog
from pttui.commands.context import Context, status
from pttui.commands.parser import ParseError
from pttui.commands.registry import parse
from pttui.commands.result import CommandResult, error
from pttui.shell.completer import ShellCompleter
from pttui.shell.output import Spinner, show
from pttui.shell.runner import run_interruptible

PROMPT = "pttui> "


def toolbar(ctx: Context, width: int | None = None) -> StyleAndTextTuples:
    """open file | model | coverage and whether it loads | recipe length, shortened step
    by step to fit ``width`` columns (None: no limit) so a narrow tmux pane still shows
    all four: labels go first, then the container, the model's family, the verdict's
    words, and at last the file and model names are cut in the middle/end with ``…``."""
    return fit_toolbar(status(ctx), width)


_LOADS = {"strict": ("class:ok", " loads", " loads", ""),
          "strict=False": ("class:warn", " loads (strict=False)", " non-strict", "~"),
          "no": ("class:bad", " does not load", " fails", "")}
_NO_FILE = (" no file open: `open PATH` · `help` lists the commands · Ctrl-D quits",
            " no file open: `open PATH` · `help` lists the commands",
            " no file open: `open PATH`", " no file: `open PATH`", " `open PATH`")


def fit_toolbar(st: dict[str, Any], width: int | None = None) -> StyleAndTextTuples:
    """The toolbar for a :func:`pttui.commands.context.status` dict, at most ``width``
    columns wide (see :func:`toolbar`)."""
    if st["file"] is None:
        for text in _NO_FILE:
            if width is None or len(text) <= width:
                return [("", text)]
        return [("", _NO_FILE[-1][:max(width or 0, 0)])]
    v = _Variant(st)
    if width is None:
        return v.parts()
    # each stage shortens one thing more; the first that fits wins
    stages: list[Callable[[_Variant], None]] = [
        lambda v: setattr(v, "recipe", 1), lambda v: setattr(v, "model", 1),
        lambda v: setattr(v, "cover", 1), lambda v: setattr(v, "root", False),
        lambda v: setattr(v, "model", 2), lambda v: setattr(v, "container", False)]
    for stage in stages:
        if _length(v.parts()) <= width:
            return v.parts()
        stage(v)
    # then the file and model names are cut to share what is left: first keeping a
    # readable part of each, then with tighter separators and only the verdict's colour
    tighter: list[Callable[[_Variant], None] | None] = [
        None, lambda v: setattr(v, "sep", "|"), lambda v: setattr(v, "cover", 2)]
    for tweak in tighter:
        if tweak is not None:
            tweak(v)
        if v.fit(width, 12 if tweak is None else 8):
            return v.parts()
    v.fit(width, 3)
    return _hard_cut(v.parts(), width)


class _Variant:
    """One way of writing the toolbar; the fields say how short each piece is."""

    def __init__(self, st: dict[str, Any]) -> None:
        self.st = st
        self.recipe = self.model = self.cover = 0
        self.root = self.container = True
        self.sep = " | "
        self.file_max: int | None = None
        self.model_max: int | None = None

    def fit(self, width: int, least: int) -> bool:
        """Cut the file and model names so the whole fits ``width``, sharing the room
        left; False when either would get fewer than ``least`` characters."""
        self.file_max = self.model_max = 0
        room = width - _length(self.parts())
        self.file_max = self.model_max = None
        need_f = len(self._file())
        need_m = len(self._model())
        if need_f + need_m <= room:
            return True
        half = room // 2
        if need_f <= half:
            self.file_max, self.model_max = need_f, room - need_f
        elif need_m <= room - half:
            self.file_max, self.model_max = room - need_m, need_m
        else:
            self.file_max, self.model_max = half, room - half
        return min(self.file_max, need_f) >= min(least, need_f) and \
            min(self.model_max, need_m) >= min(least, need_m)

    def _file(self) -> str:
        return os.path.basename(self.st["file"].rstrip("/")) or self.st["file"]

    def _model(self) -> str:
        target = self.st["target"]
        if target is None:
            return ""
        return target if self.model < 2 else (self.st.get("target_short") or target)

    def parts(self) -> StyleAndTextTuples:
        st = self.st
        name = _middle(self._file(), self.file_max)
        out: StyleAndTextTuples = [("bold", f" {name}")]
        container = st["container"]
        if container and self.container and (self.root or container != "(root)"):
            out.append(("", f" [{container}]"))
        out.append(("", self.sep))
        target = st["target"]
        if target is None:
            out.append(("", ("model: none", "no model", "no model")[self.model]))
        else:
            if self.model == 0:
                out.append(("", "model: "))
            out.append(("bold", _end(self._model(), self.model_max)))
        if st["coverage"]:
            k = st["coverage"].split()[0]  # "52/52"
            style, long, medium, short = _LOADS.get(st["loads"] or "", ("", "", "", ""))
            out.append(("", self.sep))
            if self.cover == 0:
                out += [("", st["coverage"]), (style, long)]
            elif self.cover == 1:
                out += [("", k), (style, medium)]
            else:
                out.append((style or "", k + short))
        n = st["recipe"]
        out.append(("", self.sep))
        out.append(("", f"recipe: {n} step{'' if n == 1 else 's'} " if self.recipe == 0
                    else f"recipe {n}"))
        return out


def _length(parts: StyleAndTextTuples) -> int:
    return sum(len(t) for _, t in parts)


def _middle(text: str, limit: int | None) -> str:
    """``squeeze…10cls.pt``: a file name cut in the middle, its end (suffix) kept."""
    if limit is None or len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    tail = (limit - 1) // 2
    return text[:limit - 1 - tail] + "…" + (text[-tail:] if tail else "")


def _end(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit - 1] + "…" if limit > 0 else ""


def _hard_cut(parts: StyleAndTextTuples, width: int | None) -> StyleAndTextTuples:
    out: StyleAndTextTuples = []
    left = max(width or 0, 0)
    for style, text in parts:
        if left <= 0:
            break
        out.append((style, text[:left]))
        left -= len(text[:left])
    return out


def _columns() -> int | None:
    """The room for the toolbar while the prompt is drawn: the terminal's width less the
    last column, which prompt_toolkit draws apart so a terminal does not wrap (None
    outside prompt_toolkit)."""
    try:
        from prompt_toolkit.application.current import get_app

        return max(get_app().output.get_size().columns - 1, 1)
    except Exception:  # noqa: BLE001 - no app: no limit
        return None


class Shell:
    """One interactive session. ``input``/``output`` are prompt_toolkit's, for tests;
    ``catalog`` (or the ``model_names`` loader) feeds torchvision completions."""

    def __init__(self, ctx: Context, console: Console, *, history: History | None = None,
                 model_names: Callable[[], Sequence[str]] | None = None,
                 catalog: ModelCatalog | None = None,
                 input: Any = None, output: Any = None, debug: bool = False) -> None:
        self.ctx, self.console, self.debug = ctx, console, debug
        self.completer = ShellCompleter(ctx, model_names, catalog=catalog)
        self.prompt = PromptSession(
            history=history, auto_suggest=AutoSuggestFromHistory(),
            completer=self.completer, complete_in_thread=True, complete_while_typing=True,
            bottom_toolbar=lambda: toolbar(self.ctx, _columns()), input=input, output=output,
            style=_style())

    def run(self) -> int:
        """Read and run lines until ``quit`` or Ctrl-D; Ctrl-C at the prompt clears the line."""
        while True:
            try:
                line = self.prompt.prompt(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            try:
                if self.execute(line).quit:
                    return 0
            except KeyboardInterrupt:  # while printing: the session is intact, go on
                continue

    def execute(self, line: str) -> CommandResult:
        """Run one line in a worker (a spinner if it may take a while) and print it."""
        try:
            parsed = parse(line)
        except ParseError as err:
            result = error("", str(err))
        else:
            if parsed is not None and parsed[0].slow:
                spinner = Spinner(self.console, parsed[0].name)
                with spinner.running():
                    result = run_interruptible(self.ctx, line, spinner, debug=self.debug)
            else:
                result = run_interruptible(self.ctx, line, debug=self.debug)
        show(self.console, result)
        return result


def _style() -> Any:
    from prompt_toolkit.styles import Style

    return Style.from_dict({"bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
                            "ok": "#5fd75f", "warn": "#d7d75f", "bad": "#ff5f5f"})
