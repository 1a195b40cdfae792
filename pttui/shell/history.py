"""Command history in the user's state folder; a history that cannot be written never
breaks the shell (a read-only home, a full disk: the shell just forgets)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prompt_toolkit.history import FileHistory, History, InMemoryHistory, ThreadedHistory


def history_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "pttui", "history")


class SafeFileHistory(FileHistory):
    """FileHistory that shrugs off I/O errors instead of raising into the prompt."""

    failed = False

    def load_history_strings(self) -> Iterable[str]:
        try:
            yield from list(super().load_history_strings())
        except (OSError, ValueError):
            self.failed = True

    def store_string(self, string: str) -> None:
        try:
            super().store_string(string)
        except OSError:
            self.failed = True


def make_history(enabled: bool = True) -> History:
    if not enabled:
        return InMemoryHistory()
    path = history_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return ThreadedHistory(SafeFileHistory(path))
