"""Printing results: rich on a terminal, plain text in a pipe, no colour when asked.

Colour goes when ``NO_COLOR`` is set, ``TERM`` is ``dumb``, or the stream is not a
terminal; a pipe gets a fixed width so logs do not wrap at 80 columns, and plain
output carries no trailing spaces (rich pads table cells to the column width).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from contextlib import contextmanager
from typing import IO, Iterator

from rich.console import Console
from rich.text import Text

from pttui.commands.result import CANCELLED, ERROR, CommandResult

PIPE_WIDTH = 120


def plain_wanted(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", lambda: False)()
    return (not isatty or bool(os.environ.get("NO_COLOR"))
            or os.environ.get("TERM", "") in ("dumb", "unknown"))


def make_console(stream: IO[str] | None = None) -> Console:
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", lambda: False)()
    plain = plain_wanted(stream)
    width = None if isatty else shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    return Console(file=stream, color_system=None if plain else "auto", no_color=plain,
                   force_terminal=isatty and not plain, highlight=False, emoji=False,
                   width=width, legacy_windows=False)


def show(console: Console, result: CommandResult, *, title: bool = True) -> None:
    """Print a result: its headline (errors in red), then its body."""
    if title and result.title:
        style = {ERROR: "bold red", CANCELLED: "yellow"}.get(result.status, "bold")
        prefix = "error: " if result.status == ERROR else ""
        console.print(Text(prefix + result.title, style=style), soft_wrap=True)
    for item in result.body:
        # plain lines are not hard-wrapped: code and long keys paste back intact
        if console.color_system is None:
            _print_stripped(console, item, soft_wrap=isinstance(item, Text))
        else:
            console.print(item, soft_wrap=isinstance(item, Text))


def _print_stripped(console: Console, item: object, *, soft_wrap: bool) -> None:
    """Plain output without the spaces tables pad their last column with: a pasted log
    or transcript has no trailing whitespace."""
    with console.capture() as cap:
        console.print(item, soft_wrap=soft_wrap)
    text = "\n".join(line.rstrip() for line in cap.get().split("\n"))
    console.out(text, end="", highlight=False)


class Spinner:
    """A transient status line for a slow command (terminals only), shown once it has run
    for ``delay`` seconds so quick runs do not flicker; the worker's progress updates it."""

    def __init__(self, console: Console, label: str, delay: float = 0.3) -> None:
        self.console, self.label, self.delay = console, label, delay
        self._status = None
        self._closed = False
        self._lock = threading.Lock()
        self._text = f"{label}…  (Ctrl-C stops it)"

    def __call__(self, done: int, total: int, what: str) -> None:
        frac = f" {done:,}/{total:,}" if total else ""
        self._text = f"{what}{frac}  (Ctrl-C stops it)"
        with self._lock:
            if self._status is not None:
                self._status.update(self._text)

    def _start(self) -> None:
        with self._lock:
            if self._status is None and not self._closed:
                self._status = self.console.status(self._text)
                self._status.start()

    @contextmanager
    def running(self) -> Iterator[Spinner]:
        if not self.console.is_terminal or self.console.no_color:
            yield self
            return
        timer = threading.Timer(self.delay, self._start)
        timer.daemon = True
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()
            with self._lock:
                if self._status is not None:
                    self._status.stop()
                self._status, self._closed = None, True  # a late timer starts nothing
