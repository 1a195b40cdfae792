"""``pttui shell``: the command language at a prompt_toolkit prompt, or run as a script.

``main`` picks the mode: ``--script FILE`` or a non-terminal stdin runs lines in
order (stop at the first error, exit 2); a terminal gets the interactive shell.
"""

from __future__ import annotations

import shlex
import sys
from typing import IO

from rich.text import Text

from pttui.commands.context import Context
from pttui.commands.registry import run_line
from pttui.shell.output import make_console, show
from pttui.shell.script import EXIT_ERROR, run_script


def main(path: str | None = None, script: str | None = None, *, debug: bool = False,
         history: bool = True, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    stdin = stdin if stdin is not None else sys.stdin
    out = make_console(stdout if stdout is not None else sys.stdout)
    err = make_console(stderr if stderr is not None else sys.stderr)
    ctx = Context()
    if path:
        result = run_line(ctx, f"open {shlex.quote(path)}", debug=debug)
        if not result.ok:
            err.print(Text(f"pttui: {result.title}"), soft_wrap=True)
            return EXIT_ERROR
        show(out, result)
    if script is not None and script != "-":
        try:
            with open(script, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or e
            err.print(Text(f"pttui: cannot read script {script}: {why}"), soft_wrap=True)
            return EXIT_ERROR
        return run_script(ctx, lines, out, err, name=script, debug=debug)
    if script == "-" or not stdin.isatty():
        return run_script(ctx, stdin, out, err, name="stdin", debug=debug)
    from pttui.core.targets import torchvision_models
    from pttui.shell.app import Shell
    from pttui.shell.history import make_history

    return Shell(ctx, out, history=make_history(history), model_names=torchvision_models,
                 debug=debug).run()
