"""The reading clock's hooks: the unpickler says when a pickle starts and ends.

A leaf module, so that the reader (below) and the guard that watches it (above,
pttui.core.guard.readguard) need not import each other: the guard's child sets
``report``, the unpickler calls :func:`pickle_measured` and :func:`pickle_done`.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PER_MB = 1.0  # seconds of deadline per MB of pickle, beyond base_deadline()
# Set in a guarded child: sends one report line to the watching parent. The lines:
# ``P BYTES`` a pickle is about to be unpickled (the clock starts), ``D`` it is done
# (the clock stops), ``F PATH`` a file is about to be read, ``E JSON`` a listing entry.
report: Callable[[str], None] | None = None


def base_deadline() -> float:
    try:
        return max(1.0, float(os.environ.get("PTTUI_READ_DEADLINE", "30")))
    except ValueError:
        return 30.0


def pickle_measured(nbytes: int) -> None:
    """The unpickler calls this once the memo scan measured a pickle, before unpickling
    it: in a guarded child, the parent's clock starts."""
    if report is not None:
        report(f"P {nbytes}")


def pickle_done() -> None:
    """The unpickler calls this when a pickle is unpickled (or failed): the clock stops."""
    if report is not None:
        report("D")
