"""Recipes: the repair ops, their arguments, and their renderings as code."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "args": ("quote",),
    "modmeta": ("carry_metadata",),
    "recipe": (
        "AcceptMissing", "Cast", "Drop", "KeyMap", "Op", "Recipe", "RegexRename",
        "SelectContainer",
    ),
    "render": ("replay_command",),
})
