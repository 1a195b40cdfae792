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
import pickle
from collections import OrderedDict
from typing import Any, BinaryIO

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


class StorageToken:
    """What persistent_load returns: one storage record of the archive."""

    __slots__ = ("ref", "view_offset", "view_numel")

    def __init__(self, ref: StorageRef, view_offset: int = 0, view_numel: int | None = None):
        self.ref = ref
        self.view_offset = view_offset
        self.view_numel = view_numel


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if isinstance(x, (tuple, list)) and all(_is_int(v) for v in x) and len(x) <= 64:
        return tuple(x)
    raise _BadTensor(f"{what} is not a tuple of integers")


class _BadTensor(Exception):
    pass


class TensorBuilder:
    """Turns torch's rebuild calls into TensorMeta, checking every argument."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
               dtype: str | None = None, kind: str = "tensor") -> TensorMeta | Opaque:
        try:
            if not isinstance(storage, StorageToken):
                raise _BadTensor("its storage is not a storage record")
            if not _is_int(offset) or offset < 0:
                raise _BadTensor("its storage offset is not a non-negative integer")
            shape, strides = _int_tuple(size, "its shape"), _int_tuple(stride, "its stride")
            if any(d < 0 for d in shape) or len(strides) != len(shape):
                raise _BadTensor(f"shape {list(shape)} / stride {list(strides)} is invalid")
        except _BadTensor as err:
            self.problems.append(f"a tensor could not be described: {err}")
            return _bad_tensor()
        ref = storage.ref
        dt = dtype or ref.dtype
        offset += storage.view_offset
        numel = 1
        for d in shape:
            numel *= d
        if numel:
            last = offset + sum((d - 1) * s for d, s in zip(shape, strides))
            cap = ref.nbytes * 8 // dtypes.itemsize_bits(dt) if dtype else ref.numel
            if last >= cap or any(s < 0 for s in strides):
                self.problems.append(
                    f"storage {ref.key}: a {dt} view of shape {list(shape)} at offset {offset} "
                    f"reaches past the storage's {cap} elements")
        return TensorMeta("", shape, dt, ref.location, ref, offset, strides, kind)

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
        if isinstance(data, tuple) and len(data) >= 3:
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
