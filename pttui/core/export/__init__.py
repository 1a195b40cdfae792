"""Writing the corrected state_dict: streamed, verified, never partial."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "export": ("EXTENSIONS", "SAFETENSORS", "OutputExists",),
    "job": ("ExportCancelled",),
})
