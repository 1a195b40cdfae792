"""Script mode: commands from a file or a pipe, run in order, each echoed first.

The first failing line stops the run: its message goes to stderr with the line
number, and the exit code is 2 (130 when interrupted), so a CI job or a Makefile
notices.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text

from pttui.commands.result import CANCELLED, ERROR
from pttui.shell.output import show
from pttui.shell.runner import run_interruptible

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


class ScriptError(Exception):
    """A script that cannot be read; ``str(err)`` says why in one line."""


def read_script(path: str) -> list[str]:
    """The lines of the script ``path``, checked before anything runs: a folder, a
    device, a missing file or binary data (a checkpoint given as the script) is a
    ScriptError."""
    from pttui.commands.context import checkpoint_format
    from pttui.core.target import special_file

    if not path.strip():
        raise ScriptError("--script needs a file name")
    if os.path.isdir(path):
        raise ScriptError(f"{path}: is a folder, not a script file")
    odd = special_file(path)
    if odd:
        raise ScriptError(f"{path}: {odd}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ScriptError(f"{path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        fmt = checkpoint_format(path)
        what = f"it looks like a checkpoint ({fmt}); give that as PATH, before --script" \
            if fmt else "it holds binary data, not lines of commands"
        raise ScriptError(f"{path}: not a script; {what}")
    return text.splitlines()


def run_script(ctx: Any, lines: Iterable[str], out: Console, err: Console, *,
               name: str = "stdin", debug: bool = False, echo: str = "pttui> ") -> int:
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        out.print(Text(echo + line, style="bold"), soft_wrap=True)
        result = run_interruptible(ctx, line, debug=debug)
        show(out, result, title=result.status not in (ERROR, CANCELLED))
        if result.status == CANCELLED:
            err.print(Text(f"pttui: {name}, line {number}: {result.title}"), soft_wrap=True)
            return EXIT_INTERRUPTED
        if result.status == ERROR:
            err.print(Text(f"pttui: {name}, line {number}: {result.title}"), soft_wrap=True)
            return EXIT_ERROR
        if result.quit:
            return 0
    return 0
