"""From a comparison to advice: diagnosis, suggestions, the guided fix, autofix."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "analysis": ("analyse",),
    "autofix": ("auto_fix", "choose_container", "reopen",),
    "guide": (
        "as_regex", "diagnosis", "format_advice", "next_step", "preview_op", "rename_seed",
    ),
})
