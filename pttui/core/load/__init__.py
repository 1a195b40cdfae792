"""Real torch.load attempts in a child process: policy, failures, the child."""

# pttui load's word for weights_only=False; the fix lines print it (kept here, light
# to import, because the CLI's argument parser needs it on every command).
UNSAFE_FLAG = "--unsafe-weights-only-false"

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "attempt": ("LoadAttempt", "attempt_load",),
    "output": ("check_destination", "default_destination",),
    "policy": ("LoadPolicy",),
})
