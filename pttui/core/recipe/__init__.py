"""Recipes: the repair ops, their arguments, and their renderings as code."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "args": ("quote",),
    "joinops": ("Concat", "Split", "Stack", "Unstack"),
    "modmeta": ("carry_metadata",),
    "op": ("Op",),
    "recipe": (
        "AcceptMissing", "Cast", "Drop", "KeyMap", "Recipe", "RegexRename",
        "SelectContainer",
    ),
    "render": ("replay_command",),
    "valueops": ("AdaptInputChannels", "ResamplePosEmbed", "Reshape", "ResizeRows",
                 "Transpose"),
})
