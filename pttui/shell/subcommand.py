"""``pttui shell [PATH] [--script FILE]``: the command language at a prompt, or as a script."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="a checkpoint to open first (at a terminal, one "
                   "that cannot be opened leaves the shell open with nothing in it)")
    p.add_argument("--script", metavar="FILE",
                   help="run the commands in FILE ('-': stdin) in order and exit; the first "
                        "error stops it with exit code 2, and so does a FILE that cannot be "
                        "read (checked before PATH is opened). Commands piped to stdin run "
                        "the same way")
    p.add_argument("--no-history", action="store_true",
                   help="keep no history file (default: $XDG_STATE_HOME/pttui/history)")


def run(args: argparse.Namespace) -> int:
    from pttui.shell import main

    return main(args.path, args.script, debug=args.debug, history=not args.no_history)
