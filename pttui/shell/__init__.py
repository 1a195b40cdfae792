"""``pttui shell``: the command language at a prompt_toolkit prompt, or run as a script.

``main`` picks the mode: ``--script FILE`` or a non-terminal stdin runs lines in
order (stop at the first error, exit 2); a terminal gets the interactive shell.
The script is read before the checkpoint is opened, so a bad one costs nothing. A
checkpoint that cannot be opened stops a script (exit 2); at a terminal the error is
shown and the shell starts with nothing open, for the user to ``open`` another.
"""

from __future__ import annotations

import shlex
import sys
from typing import IO

from rich.text import Text

from pttui.commands.context import Context
from pttui.commands.registry import run_line
from pttui.shell.output import make_console, show
from pttui.shell.script import EXIT_ERROR, ScriptError, read_script, run_script


def main(path: str | None = None, script: str | None = None, *, debug: bool = False,
         history: bool = True, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    stdin = stdin if stdin is not None else sys.stdin
    out = make_console(stdout if stdout is not None else sys.stdout)
    err = make_console(stderr if stderr is not None else sys.stderr)
    interactive = script is None and stdin.isatty()
    lines = None
    if script is not None and script != "-":
        try:  # before the checkpoint: a bad script must not cost a read of a big file
            lines = read_script(script)
        except ScriptError as e:
            err.print(Text(f"pttui: cannot read script {e}"), soft_wrap=True)
            return EXIT_ERROR
    ctx = Context()
    if path:
        result = run_line(ctx, f"open {shlex.quote(path)}", debug=debug)
        if result.ok:
            show(out, result)
        elif interactive:  # at a terminal the user can `open` another file
            show(out, result)
            out.print(Text("the shell starts with nothing open; `open PATH` opens a file",
                           style="dim"), soft_wrap=True)
        else:
            err.print(Text(f"pttui: {result.title}"), soft_wrap=True)
            return EXIT_ERROR
    if lines is not None:
        return run_script(ctx, lines, out, err, name=script, debug=debug)
    if not interactive:
        return run_script(ctx, stdin, out, err, name="stdin", debug=debug)
    from pttui.commands.complete import model_catalog
    from pttui.shell.app import Shell
    from pttui.shell.history import make_history

    return Shell(ctx, out, history=make_history(history), catalog=model_catalog(),
                 debug=debug).run()
