"""What every flow of the main screen does alike: ask for an open file (and a model)
before it starts, and apply one recipe op with a notification that says what changed.
The key tree's ops and the screen's flows share them, so the words never differ."""

from __future__ import annotations

from typing import Any

from pttui.core.base import ReadError


def need(node: Any, session: Any, unreadable: str = "", target: bool = False) -> bool:
    """True when the session has a file (and a model, with ``target``); else say what
    to do first. ``unreadable``: the name of a file shown that could not be read."""
    if session.source is None:
        if unreadable:
            node.notify(f"{unreadable} could not be read: only a load attempt (l) applies "
                        "to it", severity="warning")
        else:
            node.notify("open a checkpoint first (Files pane, enter)", severity="warning")
        return False
    if target and session.target is None:
        node.notify("choose the model first (m)", severity="warning")
        return False
    return True


def apply_op(node: Any, session: Any, op: Any, done: str = "") -> None:
    """Add ``op`` to the recipe; a refusal is a notification, not an error."""
    try:
        session.apply(op)
    except ReadError as err:
        node.notify(str(err), title="not applied", severity="error", timeout=8)
        return
    node.notify((done or op.describe()) + " (u undoes)")
