"""A checkpoint against a target (``strict``: the strict-load report), and two
checkpoints against each other (``twofiles``)."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "diff_text": ("render",),
    "strict": ("Report", "compare",),
    "twofiles": ("diff",),
})
