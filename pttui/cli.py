"""The ``pttui`` entry point: argparse, one line per error, the exit codes of docs/cli.md.

Exit codes: 0 success, 1 a check found problems, 2 the input cannot be read or the
command line is wrong, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pttui import __version__
from pttui.clicmds import COMMANDS

EXIT_OK, EXIT_MISMATCH, EXIT_UNREADABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
_TUI_OPTIONS = ("--model", "--model-arg", "--map-location", "--no-mouse")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other error
        sys.stderr.write(f"pttui: error: {message} (see 'pttui {self._cmd()}--help')\n")
        raise SystemExit(EXIT_UNREADABLE)

    def _cmd(self) -> str:
        parts = self.prog.split()[1:]
        return " ".join(parts) + " " if parts else ""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check its metavar), and
        # each asks shutil for the terminal's width: shutil imports bz2 and lzma, 2-3 ms
        # of a 70 ms `pttui inspect`. The same width, found without shutil, once.
        return self.formatter_class(prog=self.prog, width=_help_width())


_WIDTH: list[int] = []


def _help_width() -> int:
    """``shutil.get_terminal_size().columns - 2``, argparse's default width."""
    if not _WIDTH:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (AttributeError, ValueError, OSError):
                columns = 0
        _WIDTH.append((columns or 80) - 2)
    return _WIDTH[0]


def _command_help() -> dict[str, str]:
    # Kept here rather than in each module so --help imports no command module.
    return {
        "inspect": "show what a checkpoint holds, without running any of its code",
        "check": "compare a checkpoint with a model: would a strict load succeed?",
        "fix": "repair a checkpoint for a model (--auto or --recipe) and export it",
        "diff": "compare two checkpoints: keys, shapes, dtypes, and values",
        "recipe": "show a saved repair recipe, or render it for mmengine, transformers or Python",
        "load": "try a real torch.load in a subprocess and explain any failure",
        "devices": "show CPU RAM, GPUs (NVML) and who uses them; --for FILE: where it fits",
        "shell": "an interactive repair shell (or run a script of its commands)",
    }


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``only``, that command's subparser alone (the others
    are needed for ``pttui --help`` only, and each costs a parser's set-up)."""
    parser = _Parser(prog="pttui", usage=_USAGE, description=(
        "Inspect, diagnose and repair PyTorch checkpoints that will not load."),
        epilog="Run 'pttui COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"pttui {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when something fails")
    if only is None:  # listed in `pttui --help`; parsed by _default, which runs the TUI
        _add_tui_options(parser.add_argument_group(
            "the terminal UI", "pttui [FOLDER | FILE] opens a folder of checkpoints (default: "
            "the current one), or one checkpoint file, in the terminal UI; piped or scripted "
            "it prints the folder listing instead. Its options:"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                prog="pttui")
    helps = _command_help()
    for name in COMMANDS if only is None else (only,):
        sub.add_parser(name, help=helps.get(name), description=helps.get(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = _command(argv)
    from pttui.core.guard import readguard

    if _reads(argv, cmd, readguard.READING):  # in a forked child under a deadline
        return readguard.run_guarded(lambda: _main(argv, cmd), readguard.cli_label(argv, cmd),
                                     lean=cmd == "inspect")
    return _main(argv, cmd)


def entry() -> None:
    """The ``pttui`` console script. After a command read in a forked child (see
    :func:`main`), the waiting parent has nothing left to tidy: it skips the interpreter's
    teardown (~9 ms of freeing modules, a tenth of inspecting a 2.5 GB file)."""
    from pttui.core.guard import READING

    code = main()
    argv = sys.argv[1:]
    if _reads(argv, _command(argv), READING):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _reads(argv: list[str], cmd: str | None, reading: tuple[str, ...]) -> bool:
    """Whether the command unpickles a file (``devices`` only with ``--for FILE``)."""
    if cmd == "devices":
        return any(a == "--for" or a.startswith("--for=") for a in argv)
    return cmd in reading


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _main(argv: list[str], cmd: str | None) -> int:
    # Fill in only the chosen command's options, so --help imports nothing heavy.
    only = cmd if cmd in COMMANDS else None
    if only and any(a.startswith(("-h", "--h")) for a in argv[:argv.index(cmd)]):
        only = None  # `pttui --help inspect` (even `--he`): the top-level help lists them all
    parser = build_parser(only)
    if cmd in COMMANDS:
        module = importlib.import_module(COMMANDS[cmd])
        module.add_arguments(parser._subparsers._group_actions[0].choices[cmd])  # type: ignore[union-attr]
    if cmd is not None and cmd not in COMMANDS:
        return _default(argv)
    if cmd is None and any(a.split("=")[0] in _TUI_OPTIONS for a in argv):
        return _default(argv)  # `pttui --no-mouse`: the TUI's options, no path
    args = parser.parse_args(argv)
    if args.command is None:
        return _default(argv)
    return _run(module.run, args, argv)


def _default(argv: list[str]) -> int:
    """``pttui [PATH]``: the TUI on a terminal; the folder listing when piped or scripted."""
    parser = _Parser(prog="pttui", description="Open a folder of checkpoints (default: here) "
                     "in the terminal UI; prints the folder listing when not on a terminal.")
    parser.add_argument("path", nargs="?", default=".",
                        help="a folder, or a checkpoint file (opened, its folder listed)")
    _add_tui_options(parser)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    if sys.stdout.isatty() and sys.stdin.isatty():
        return _run(_tui, args, argv)
    from pttui.clicmds import folder
    # a folder is listed file by file under deadlines (folder.run); a file is inspected
    return _run(folder.run, args, argv, guard=os.path.isfile(args.path))


_USAGE = ("pttui [FOLDER | FILE] [--model SPEC [--model-arg K=V ...]] [--map-location WHERE] "
          "[--no-mouse]\n       pttui COMMAND [options]   (pttui COMMAND --help for them)\n"
          "       pttui --version")


def _add_tui_options(parser) -> None:
    parser.add_argument("--model", metavar="SPEC", help="compare with this model at start: "
                        "torchvision:NAME, package.module:factory, path/to/file.py:Factory, "
                        "or ref:OTHER_CHECKPOINT")
    parser.add_argument("--model-arg", action="append", default=[], metavar="K=V",
                        help="an argument for the model factory (repeatable)")
    parser.add_argument("--map-location", default="auto", metavar="WHERE",
                        help="for load attempts: auto (default), cpu, cuda, cuda:N, meta, keep")
    parser.add_argument("--no-mouse", action="store_true",
                        help="keyboard only: leave the mouse to the terminal")


def _tui(args: argparse.Namespace) -> int:
    import os

    from pttui.core.load import LoadPolicy
    from pttui.core.base import ReadError

    if not os.path.exists(args.path):
        raise ReadError(f"{args.path}: no such file or folder")
    try:
        LoadPolicy(map_location=args.map_location)
    except ValueError as err:
        raise ReadError(str(err)) from None
    model_args = {}
    if args.model_arg:  # targets (difflib, hashlib, inspect) is not needed to paint
        from pttui.core.target import parse_model_args

        model_args = parse_model_args(args.model_arg)
    if model_args and not args.model:
        raise ReadError("--model-arg needs --model")
    from pttui.tui import run

    return run(args.path, model=args.model, model_args=model_args,
               map_location=args.map_location, mouse=not args.no_mouse)


def _run(fn, args: argparse.Namespace, argv: list[str], guard: bool = False) -> int:
    """``fn(args)`` with one line per error; ``guard``: in a child with a deadline, for
    commands that unpickle files (see pttui.core.guard.readguard)."""
    if guard:
        from pttui.core.guard import readguard

        return readguard.run_guarded(lambda: _run(fn, args, argv), str(args.path))
    from pttui.core.base import ReadError

    try:
        return int(fn(args))
    except ReadError as err:
        if args.debug:
            raise
        sys.stderr.write(f"pttui: {err}\n")
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        sys.stderr.write("pttui: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if args.debug:
            raise
        sys.stderr.write(f"pttui: internal error: {type(err).__name__}: {err} "
                         "(rerun with --debug for the traceback, and please report it)\n")
        return EXIT_UNREADABLE


if __name__ == "__main__":
    entry()
