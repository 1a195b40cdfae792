"""A user's working state (source, target, recipe, undo) and its export."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "export": ("default_output", "export_session", "free_output", "with_format",),
    "session": ("Session",),
})
