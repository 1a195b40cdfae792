"""Script mode: commands from a file or a pipe, run in order, each echoed first.

The first failing line stops the run: its message goes to stderr with the line
number, and the exit code is 2 (130 when interrupted), so a CI job or a Makefile
notices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text

from pttui.commands.result import CANCELLED, ERROR
from pttui.shell.output import show
from pttui.shell.runner import run_interruptible

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


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
