"""CPU RAM and GPUs, as pttui reports them."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "devices": ("format_bytes", "snapshot", "torch_versions",),
})
