"""torch's tensor rebuild functions, re-implemented to build TensorMeta from checked data.

A hostile pickle calls these with anything it likes; every argument is checked
(int64 bounds included) and a bad one becomes a recorded problem, never an
exception and never a 10,000-digit number in a message.
"""

from __future__ import annotations

import math
import operator
import struct

from pttui.core.base import dtypes
from pttui.core.base.meta import StorageRef, TensorMeta
from pttui.core.read.pickle.stubs import Opaque, StorageView

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any


def is_int(x: Any) -> bool:
    return type(x) is int


_I64 = (1 << 63) - 1  # torch sizes, strides and offsets are int64


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if type(x) in (tuple, list) and len(x) <= 64 and all(
            type(v) is int and 0 <= v <= _I64 for v in x):
        return tuple(x)
    raise _BadTensor(f"{what} is not a tuple of int64 sizes")


def _show(seq: Any, limit: int = 8) -> str:
    """A shape or stride for a message: never a 10,000-digit number, never 64 entries."""
    if type(seq) not in (tuple, list):
        return f"<{type(seq).__name__}>"
    items = [str(v) if type(v) is int and -_I64 <= v <= _I64 else
             ("<huge int>" if type(v) is int else f"<{type(v).__name__}>") for v in seq[:limit]]
    return "[" + ", ".join(items) + (", …]" if len(seq) > limit else "]")


def _text(x: Any, limit: int = 80) -> str:
    """A device or name from the file as a one-line string (never str() of a huge int)."""
    if isinstance(x, str):
        text = x if x.isprintable() else repr(x)[1:-1]
        return text[:limit]
    return f"<{type(x).__name__}>"


_PACK = [struct.Struct(f"<{1 + 2 * n}Q") for n in range(65)]  # offset, sizes, strides
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)


class _BadTensor(Exception):
    pass


class TensorBuilder:
    """Turns torch's rebuild calls into TensorMeta, checking every argument.

    This is the hot path of reading (once per tensor), so checks are type() tests.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any,
               dtype: str | None = None, kind: str = "tensor") -> TensorMeta | Opaque:
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``."""
        if type(storage) is not StorageRef:
            if type(storage) is not StorageView or type(offset) is not int:
                self.problems.append("a tensor's storage is malformed")
                return bad_tensor()
            offset, storage = offset + storage.offset, storage.ref
        try:  # one C call: offset, sizes and strides are ints in [0, 2**64), equal in number
            _PACK[len(size)].pack(offset, *size, *stride)
            if type(size) is not tuple or type(stride) is not tuple:
                raise TypeError
        except (struct.error, TypeError, IndexError):
            self.problems.append(f"a tensor has an invalid offset, shape {_show(size)} or "
                                 f"stride {_show(stride)}")
            return bad_tensor()
        numel = math.prod(size)
        if numel > _I64:
            self.problems.append(f"a tensor of shape {_show(size)} has more elements than "
                                 "torch can address")
            return bad_tensor()
        span = sum(map(operator.mul, size, stride)) - sum(stride)  # sum((d - 1) * s)
        dt = dtype or storage.dtype
        if numel:
            cap = storage.numel if dtype is None else (
                storage.numel * dtypes.itemsize_bits(storage.dtype) // dtypes.itemsize_bits(dt))
            if offset + span >= cap:
                self.problems.append(
                    f"storage {_text(storage.key)}: a {dt} view of shape {_show(size)} at "
                    f"offset {offset} reaches past the storage's {cap} elements")
        return _new(TensorMeta, ("", size, dt, storage.location, storage, offset, stride, kind))

    rebuild_tensor = tensor  # torch._utils._rebuild_tensor and _v2 share its signature

    def rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad=False,
                          backward_hooks=None, dtype=None, *_):
        dt = dtypes.canonical(dtype) if isinstance(dtype, str) else None
        if dt is None:
            self.problems.append(f"a tensor names an unknown dtype "
                                 f"{getattr(dtype, 'qualname', None) or _text(dtype)}")
            return bad_tensor()
        return self.tensor(storage, storage_offset, size, stride, dtype=dt)

    def rebuild_parameter(self, data, requires_grad=True, backward_hooks=None, *state):
        return _with_kind(data, "parameter")

    def rebuild_qtensor(self, storage, storage_offset, size, stride, *_):
        return self.tensor(storage, storage_offset, size, stride, kind="quantized")

    def rebuild_meta(self, dtype, size, stride=None, *_):
        dt = dtypes.canonical(dtype) if isinstance(dtype, str) else None
        try:
            shape = _int_tuple(size, "its shape")
        except _BadTensor:
            return bad_tensor()
        return TensorMeta("", shape, dt or "unknown", "meta", None, 0, None, "meta")

    def rebuild_wrapper_subclass(self, cls, dtype, size, stride, storage_offset, layout,
                                 device, *_):
        dt = dtypes.canonical(dtype) if isinstance(dtype, str) else None
        try:
            shape = _int_tuple(size, "its shape")
        except _BadTensor:
            return bad_tensor()
        return TensorMeta("", shape, dt or "unknown", _text(device), None, 0, None, "subclass")

    def rebuild_sparse(self, layout, data, *_):
        if type(data) is tuple and len(data) >= 3:
            values = data[1]
            try:
                shape = _int_tuple(tuple(data[2]), "its shape")
            except (_BadTensor, TypeError):
                return bad_tensor()
            dt = values.dtype if isinstance(values, TensorMeta) else "unknown"
            dev = values.device if isinstance(values, TensorMeta) else "cpu"
            return TensorMeta("", shape, dt, dev, None, 0, None, "sparse")
        return bad_tensor()

    def rebuild_from_cpu(self, data, dtype=None, device=None, *_):
        if isinstance(data, TensorMeta):
            return TensorMeta("", data.shape, data.dtype, _text(device or data.device),
                              data.storage, data.storage_offset, data.stride, data.kind)
        return bad_tensor()

    def rebuild_nested(self, buffer, sizes, *_):
        if isinstance(buffer, TensorMeta):
            return _with_kind(buffer, "nested")
        return bad_tensor()

    def rebuild_from_type_v2(self, func, new_type, args, state=None):
        if not callable(func) or not isinstance(args, tuple):
            return bad_tensor()
        result = func(*args)
        name = getattr(new_type, "qualname", "") or str(new_type)
        if isinstance(result, TensorMeta) and "Parameter" in name:
            return _with_kind(result, "parameter")
        return result


def _with_kind(t: Any, kind: str) -> Any:
    if isinstance(t, TensorMeta):
        return TensorMeta(t.key, t.shape, t.dtype, t.device, t.storage, t.storage_offset,
                          t.stride, kind)
    return t


class _BadTensorType(Opaque):
    qualname = "<unreadable tensor>"


def bad_tensor() -> Opaque:
    return _BadTensorType()


REBUILDERS = {
    ("torch._utils", "_rebuild_tensor"): "rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v3"): "rebuild_tensor_v3",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_parameter",
    ("torch._utils", "_rebuild_qtensor"): "rebuild_qtensor",
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): "rebuild_meta",
    ("torch._utils", "_rebuild_wrapper_subclass"): "rebuild_wrapper_subclass",
    ("torch._utils", "_rebuild_sparse_tensor"): "rebuild_sparse",
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"): "rebuild_from_cpu",
    ("torch._utils", "_rebuild_nested_tensor"): "rebuild_nested",
    ("torch._tensor", "_rebuild_from_type_v2"): "rebuild_from_type_v2",
}
