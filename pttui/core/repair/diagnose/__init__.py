"""Diagnosis: what went wrong between a file and its model, in words."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "containers": ("best_container",),
})
