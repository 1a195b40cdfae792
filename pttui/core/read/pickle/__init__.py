"""The restricted unpickler: inert stand-ins, tensor builders, the memo guard, the globals classifier."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "globalscan": ("classify",),
})
