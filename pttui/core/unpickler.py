"""A restricted unpickler that never runs pickled code and never imports anything.

``find_class`` hands back pttui's own objects only:
- torch's tensor rebuild functions become builders of :class:`TensorMeta`;
- dtypes, storage classes, ``torch.Size`` and ``torch.device`` become plain tokens;
- a few harmless builtins (OrderedDict, set, ...) stay what they are;
- everything else becomes an inert :class:`Opaque` class that records its name and,
  when REDUCE/NEWOBJ/BUILD touch it, the arguments and state it was given.

So the worst a hostile pickle can do is build a tree of inert objects; the
walker that turns that tree into containers is bounded separately.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import operator
import pickle
from collections import OrderedDict
from typing import Any, BinaryIO, NamedTuple

from pttui.core import dtypes
from pttui.core.meta import ReadError, StorageRef, TensorMeta

_MAX_GLOBALS = 100_000


class Opaque:
    """An instance of a class pttui refuses to import: its name, arguments and state."""

    __slots__ = ("args", "state", "items", "__weakref__")
    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args = args + ((kwargs,) if kwargs else ())
        self.state = None
        self.items = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # NEWOBJ must not re-run anything
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # APPENDS / SETITEMS / ADDITEMS on a non-builtin call these; record, never dispatch.
    def append(self, value: Any) -> None:
        self._items_list().append(value)

    def extend(self, values: Any) -> None:
        self._items_list().extend(values if isinstance(values, list) else list(values))

    def add(self, value: Any) -> None:
        self._items_list().append(value)

    def __setitem__(self, key: Any, value: Any) -> None:
        if not isinstance(self.items, dict):
            self.items = {}
        self.items[key] = value

    def _items_list(self) -> list:
        if not isinstance(self.items, list):
            self.items = []
        return self.items

    def __repr__(self) -> str:
        return f"<{type(self).qualname}>"


class _OpaqueMeta(type):
    """Calling an opaque class (REDUCE) records the call instead of running it."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Opaque:
        cls.called = True  # type: ignore[attr-defined]
        return cls.__new__(cls, *args, **kwargs)


class DType(str):
    """A dtype token: ``torch.float32`` read as the string ``float32``."""


class StorageType(str):
    """A storage class token (``FloatStorage``); its value is the dtype it holds."""


class Device(str):
    """A ``torch.device`` token (``cuda:0``)."""


class StorageView(NamedTuple):
    """A legacy-format view into a storage (``view_metadata`` in the persistent id)."""

    ref: StorageRef
    offset: int


def _is_int(x: Any) -> bool:
    return type(x) is int


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if type(x) in (tuple, list) and len(x) <= 64 and all(type(v) is int for v in x):
        return tuple(x)
    raise _BadTensor(f"{what} is not a tuple of integers")


_INT = frozenset({int})


class _BadTensor(Exception):
    pass


class TensorBuilder:
    """Turns torch's rebuild calls into TensorMeta, checking every argument.

    This is the hot path of reading (once per tensor), so checks are type() tests.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
               dtype: str | None = None, kind: str = "tensor") -> TensorMeta | Opaque:
        if type(storage) is StorageView:
            offset = offset + storage.offset if type(offset) is int else offset
            storage = storage.ref
        if (type(storage) is not StorageRef or type(offset) is not int or offset < 0
                or type(size) is not tuple or type(stride) is not tuple
                or len(size) != len(stride) or len(size) > 64):
            self.problems.append("a tensor's storage, offset, shape or stride is malformed")
            return _bad_tensor()
        if not (_INT.issuperset(map(type, size)) and _INT.issuperset(map(type, stride))) or (
                size and (min(size) < 0 or min(stride) < 0)):
            self.problems.append(f"a tensor has an invalid shape {list(size)!r} or "
                                 f"stride {list(stride)!r}")
            return _bad_tensor()
        numel = math.prod(size)
        span = sum(map(operator.mul, size, stride)) - sum(stride)  # sum((d - 1) * s)
        dt = dtype or storage.dtype
        if numel:
            cap = storage.numel if dtype is None else (
                storage.numel * dtypes.itemsize_bits(storage.dtype) // dtypes.itemsize_bits(dt))
            if offset + span >= cap:
                self.problems.append(
                    f"storage {storage.key}: a {dt} view of shape {list(size)} at offset "
                    f"{offset} reaches past the storage's {cap} elements")
        return TensorMeta("", size, dt, storage.location, storage, offset, stride, kind)

    # torch._utils rebuild functions, same signatures as torch's
    def rebuild_tensor(self, storage, storage_offset, size, stride, *_):
        return self.tensor(storage, storage_offset, size, stride)

    def rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad=False,
                          backward_hooks=None, dtype=None, *_):
        dt = dtypes.canonical(dtype) if isinstance(dtype, str) else None
        if dt is None:
            self.problems.append(f"a tensor names an unknown dtype {dtype!r}")
            return _bad_tensor()
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
            return _bad_tensor()
        return TensorMeta("", shape, dt or "unknown", "meta", None, 0, None, "meta")

    def rebuild_wrapper_subclass(self, cls, dtype, size, stride, storage_offset, layout,
                                 device, *_):
        dt = dtypes.canonical(dtype) if isinstance(dtype, str) else None
        try:
            shape = _int_tuple(size, "its shape")
        except _BadTensor:
            return _bad_tensor()
        return TensorMeta("", shape, dt or "unknown", str(device), None, 0, None, "subclass")

    def rebuild_sparse(self, layout, data, *_):
        if type(data) is tuple and len(data) >= 3:
            values = data[1]
            try:
                shape = _int_tuple(tuple(data[2]), "its shape")
            except (_BadTensor, TypeError):
                return _bad_tensor()
            dt = values.dtype if isinstance(values, TensorMeta) else "unknown"
            dev = values.device if isinstance(values, TensorMeta) else "cpu"
            return TensorMeta("", shape, dt, dev, None, 0, None, "sparse")
        return _bad_tensor()

    def rebuild_from_cpu(self, data, dtype=None, device=None, *_):
        if isinstance(data, TensorMeta):
            return TensorMeta("", data.shape, data.dtype, str(device or data.device),
                              data.storage, data.storage_offset, data.stride, data.kind)
        return _bad_tensor()

    def rebuild_nested(self, buffer, sizes, *_):
        if isinstance(buffer, TensorMeta):
            return _with_kind(buffer, "nested")
        return _bad_tensor()

    def rebuild_from_type_v2(self, func, new_type, args, state=None):
        if not callable(func) or not isinstance(args, tuple):
            return _bad_tensor()
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


def _bad_tensor() -> Opaque:
    return _BadTensorType()


_REBUILDERS = {
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


def _size(*args: Any) -> tuple:
    return tuple(args[0]) if args and isinstance(args[0], (tuple, list)) else ()


def _device(*args: Any) -> Device:
    if len(args) == 1 and isinstance(args[0], str):
        return Device(args[0])
    if len(args) == 2 and isinstance(args[0], str) and _is_int(args[1]):
        return Device(f"{args[0]}:{args[1]}")
    return Device("unknown")


def _codecs_encode(*args: Any) -> Any:
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin1")
    return Opaque()


def _safe_builtin(cls: type):
    def build(*args: Any) -> Any:
        try:
            if all(isinstance(a, (list, tuple, str, bytes, int, float, set, frozenset))
                   for a in args):
                return cls(*args)
        except (TypeError, ValueError):
            pass
        return Opaque()
    return build


_HARMLESS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): _size,
    ("torch", "device"): _device,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): _safe_builtin(set),
    ("builtins", "frozenset"): _safe_builtin(frozenset),
    ("builtins", "bytearray"): _safe_builtin(bytearray),
    ("builtins", "complex"): _safe_builtin(complex),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles into inert stand-ins; records every global the stream references."""

    def __init__(self, data: bytes | BinaryIO, persistent_load, label: str) -> None:
        super().__init__(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
        self._persistent = persistent_load
        self.label = label
        self.problems: list[str] = []
        self.builder = TensorBuilder(self.problems)
        self.globals: dict[str, type | Any] = {}
        self.attribute_paths: set[str] = set()  # "mod.Class.attr": reaches through attributes
        self._classes: dict[tuple[str, str], Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent(pid)

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 streams), mapped as pickle's fix_imports would.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        found = self._classes.get(key)
        if found is not None:
            return found
        if len(self._classes) >= _MAX_GLOBALS:
            raise ReadError(f"{self.label}: the pickle names over {_MAX_GLOBALS} distinct "
                            "globals; refusing to read it")
        found = self._resolve(module, name)
        self._classes[key] = found
        self.globals[f"{module}.{name}"] = found
        if "." in name:
            self.attribute_paths.add(f"{module}.{name}")
        return found

    def _resolve(self, module: str, name: str) -> Any:
        method = _REBUILDERS.get((module, name))
        if method:
            return getattr(self.builder, method)
        if (module, name) in _HARMLESS:
            return _HARMLESS[(module, name)]
        if module in ("torch", "torch.cuda", "torch.storage"):
            if name in dtypes.STORAGE_DTYPES:
                return StorageType(dtypes.STORAGE_DTYPES[name])
            if name == "TypedStorage":
                return StorageType("uint8")
            dt = dtypes.canonical(name) if module == "torch" else None
            if dt is not None:
                return DType(dt)
        return _OpaqueMeta(name if name.isidentifier() else "Opaque", (Opaque,),
                           {"__slots__": (), "qualname": f"{module}.{name}", "called": False})

    def run(self) -> Any:
        try:
            return self.load()
        except ReadError:
            raise
        except RecursionError:
            raise ReadError(f"{self.label}: the pickle nests too deeply to read safely") from None
        except MemoryError:
            raise ReadError(f"{self.label}: the pickle asks for more memory than it could "
                            "hold; the file is damaged or hostile") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, UnicodeDecodeError, OverflowError, struct_error) as err:
            raise ReadError(f"{self.label}: the pickle is damaged ({_short(err)}); "
                            "the file may be truncated or not a PyTorch checkpoint") from None


try:
    from struct import error as struct_error
except ImportError:  # pragma: no cover
    struct_error = ValueError  # type: ignore[misc,assignment]


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:160]


def called_globals(unpickler: RestrictedUnpickler) -> set[str]:
    """Names of opaque globals the pickle called like functions (REDUCE)."""
    called = {n for n, g in unpickler.globals.items()
              if isinstance(g, type) and issubclass(g, Opaque) and getattr(g, "called", False)}
    return called | unpickler.attribute_paths
