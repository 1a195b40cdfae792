"""Running the reader in a guarded child: deadlines, memory, signals."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "readguard": ("READING", "list_guarded", "open_guarded",),
})
