"""The ground floor: the data model, dtypes, numbers for people, partial files."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "dtypes": ("itemsize_bits",),
    "meta": ("Checkpoint", "Container", "Derived", "ReadError", "TensorMeta", "source_keys"),
})
