"""Run one command in a worker thread, so Ctrl-C interrupts it and the session survives.

The main thread waits; Ctrl-C sets the command's cancel event and gives it a moment
to stop cleanly (an export removes its temp file, a load kills its child). A command
that cannot stop at once (building a model inside torch) is left to finish in the
background: it checks the event before it changes anything, so its late result is
discarded and the session stays as it was.
"""

from __future__ import annotations

import threading
from typing import Any

from pttui.commands.parser import ParseError, split
from pttui.commands.registry import Progress, run_line
from pttui.commands.result import CANCELLED, OK, CommandResult, cancelled

GRACE_S = 3.0


def run_interruptible(ctx: Any, line: str, progress: Progress | None = None, *,
                      debug: bool = False, grace: float = GRACE_S) -> CommandResult:
    cancel, finished = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = run_line(ctx, line, cancel=cancel, progress=progress, debug=debug)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            box["error"] = err
        finally:
            finished.set()

    # Waiting on an Event, not Thread.join: before Python 3.13 a join interrupted by
    # Ctrl-C marks a still-running thread as finished.
    threading.Thread(target=work, name="pttui-command", daemon=True).start()
    try:
        while not finished.wait(0.05):
            pass
    except KeyboardInterrupt:
        cancel.set()
        try:
            finished.wait(grace)
        except KeyboardInterrupt:
            pass
        done = box.get("result")
        if done is not None and finished.is_set():
            return done if done.status in (OK, CANCELLED) else cancelled(done.command or _name(line))
        return cancelled(_name(line), f"{_name(line)}: interrupted; it stops in the background "
                         "and changes nothing")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _name(line: str) -> str:
    try:
        words = split(line)
    except ParseError:
        words = []
    return words[0] if words else "command"
