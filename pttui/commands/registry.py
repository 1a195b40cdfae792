"""Every command, by name, and ``run_line``: parse one line and run it against a Context.

Command modules register their handlers with :func:`command`; they are imported on
the first lookup, so importing :mod:`pttui.commands` costs nothing. A handler gets a
:class:`Call` and returns a :class:`CommandResult`; whatever it raises becomes one
line (a ReadError's message, or a labelled internal error), never a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pttui.commands.parser import ParseError, Spec, bind, split
from pttui.commands.result import (CommandCancelled, CommandResult, cancelled, error)
from pttui.core.export import ExportCancelled
from pttui.core.base import ReadError

Progress = Callable[[int, int, str], Any]  # (done, total, what) -- total 0: unknown
Handler = Callable[["Call"], CommandResult]

_MODULES = ("inspect_cmds", "repair_cmds", "value_cmds", "recipe_cmds", "io_cmds", "tensor_cmds",
            "help_cmds")
# help order: look, repair, write, other
ORDER = ("open", "status", "ls", "tree", "find", "info", "stats", "containers", "select",
         "model", "check", "suggest", "apply", "rename", "drop", "cast", "accept-missing",
         "transpose", "reshape", "concat", "split", "stack", "unstack", "resample",
         "adapt-channels", "resize-rows",
         "undo", "redo", "recipe", "load", "export", "diff", "devices", "help", "quit")
SPECS: dict[str, Spec] = {}
HANDLERS: dict[str, Handler] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def command(spec: Spec) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of ``spec`` (a decorator)."""
    def register(fn: Handler) -> Handler:
        SPECS[spec.name] = spec
        HANDLERS[spec.name] = fn
        for alias in spec.aliases:
            _ALIASES[alias] = spec.name
        return fn
    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        for name in _MODULES:
            importlib.import_module(f"pttui.commands.{name}")
        _loaded = True


def specs() -> list[Spec]:
    """Every command in help order."""
    _load()
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(SPECS.values(), key=lambda s: rank.get(s.name, len(rank)))


def lookup(name: str) -> Spec | None:
    _load()
    return SPECS.get(_ALIASES.get(name, name))


def names() -> list[str]:
    """Command names and aliases, for completion."""
    return [s.name for s in specs()] + list(_ALIASES)


@dataclass
class Call:
    """One running command: its context, parsed arguments, and the way to stop it."""

    ctx: Any  # pttui.commands.context.Context
    spec: Spec
    args: dict[str, Any]
    cancel: threading.Event
    progress: Progress | None = None

    @property
    def session(self) -> Any:
        return self.ctx.session

    def check_cancel(self) -> None:
        """Raise CommandCancelled when the caller asked to stop; call before changing state."""
        if self.cancel.is_set():
            raise CommandCancelled()

    def report(self, done: int, total: int, what: str = "") -> None:
        """Progress for the caller; also the point where a long loop notices a cancel."""
        self.check_cancel()
        if self.progress is not None:
            self.progress(done, total, what or self.spec.name)

    def result(self, title: str = "", *body: Any, **data: Any) -> CommandResult:
        return CommandResult(self.spec.name, title=title, body=list(body), data=dict(data))


def parse(line: str) -> tuple[Spec, dict[str, Any]] | None:
    """The command and its arguments; None for a blank line or a comment."""
    words = split(line)
    if not words or words[0].startswith("#"):
        return None
    spec = lookup(words[0])
    if spec is None:
        close = difflib.get_close_matches(words[0], names(), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ParseError(f"unknown command `{words[0]}`{hint} (`help` lists the commands)")
    return spec, bind(spec, words[1:])


def run_line(ctx: Any, line: str, *, cancel: threading.Event | None = None,
             progress: Progress | None = None, debug: bool = False) -> CommandResult:
    """Parse and run one line. Never raises (but KeyboardInterrupt): every failure is a
    CommandResult with status ``error`` and a one-line title."""
    try:
        parsed = parse(line)
    except ParseError as err:
        return error("", str(err))
    if parsed is None:
        return CommandResult("")
    spec, args = parsed
    call = Call(ctx, spec, args, cancel or threading.Event(), progress)
    try:
        return HANDLERS[spec.name](call)
    except CommandCancelled:
        return cancelled(spec.name)
    except ReadError as err:
        if isinstance(err, ExportCancelled) or call.cancel.is_set():
            return cancelled(spec.name, str(err))
        return error(spec.name, str(err))
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        first = (str(err).splitlines() or [""])[0][:200]
        return error(spec.name, f"{spec.name}: internal error: {type(err).__name__}: {first} "
                                "(please report it)", traceback=traceback.format_exc())
