"""Reading checkpoints without running them: formats, zips, tensors, folders."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "folder": ("list_folder",),
    "keyfilter": ("Row",),
    "keytree": ("build_tree", "walk",),
    "reader": ("open_checkpoint",),
    "valuestats": ("Cancelled", "tensor_stats",),
})
