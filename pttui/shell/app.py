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

from pttui.commands.context import Context, status
from pttui.commands.parser import ParseError
from pttui.commands.registry import parse
from pttui.commands.result import CommandResult, error
from pttui.shell.completer import ShellCompleter
from pttui.shell.output import Spinner, show
from pttui.shell.runner import run_interruptible

PROMPT = "pttui> "


def toolbar(ctx: Context) -> StyleAndTextTuples:
    """open file | model | coverage and whether it loads | recipe length."""
    st = status(ctx)
    if st["file"] is None:
        return [("", " no file open: `open PATH` · `help` lists the commands · Ctrl-D quits")]
    loads = {"strict": ("class:ok", " loads"), "strict=False": ("class:warn", " loads "
             "(strict=False)"), "no": ("class:bad", " does not load")}.get(st["loads"] or "")
    parts: StyleAndTextTuples = [("bold", f" {os.path.basename(st['file'].rstrip('/'))}"),
                                 ("", f" [{st['container']}]")]
    parts += [("", " | model: "), ("bold", st["target"] or "none")]
    if st["coverage"]:
        parts += [("", f" | {st['coverage']}")]
        if loads:
            parts.append(loads)
    n = st["recipe"]
    parts += [("", f" | recipe: {n} step{'' if n == 1 else 's'} ")]
    return parts


class Shell:
    """One interactive session. ``input``/``output`` are prompt_toolkit's, for tests."""

    def __init__(self, ctx: Context, console: Console, *, history: History | None = None,
                 model_names: Callable[[], Sequence[str]] | None = None,
                 input: Any = None, output: Any = None, debug: bool = False) -> None:
        self.ctx, self.console, self.debug = ctx, console, debug
        self.completer = ShellCompleter(ctx, model_names)
        self.prompt = PromptSession(
            history=history, auto_suggest=AutoSuggestFromHistory(),
            completer=self.completer, complete_in_thread=True, complete_while_typing=True,
            bottom_toolbar=lambda: toolbar(self.ctx), input=input, output=output,
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
