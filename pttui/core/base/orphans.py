"""No orphans: a child pttui started dies with the process that waits for it.

Kept apart from the sandbox (which spawns, and imports subprocess and threads for it)
because every guarded reading child calls this first, and a CLI's fork pays for each
import on the way to its first line of output.
"""

from __future__ import annotations

import os
import signal

PARENT_ENV = "PTTUI_PARENT"  # the pid a spawned child dies with (sandbox.spawn)


def die_with_parent(parent: int) -> None:
    """Linux: killed when the waiting parent dies (killed outright itself), so no orphan
    goes on computing or writing for nobody: SIGKILL, since a child stuck in C code (the
    pickles this guard exists for) cannot act on anything milder; a partial export it
    leaves is locked and swept by the next export."""
    import ctypes  # here: `pttui --help` imports this module and needs no ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def die_with_spawner() -> None:
    """In a child started by ``pttui.core.load.sandbox.spawn``: die with the pttui
    process that started it. Such a child runs in a session of its own, so a killed TUI
    or shell (a dropped SSH session) would leave it reading, loading, or hashing a
    crafted pickle for ever, for nobody."""
    parent = os.environ.pop(PARENT_ENV, "")
    if parent.isdigit():
        die_with_parent(int(parent))
