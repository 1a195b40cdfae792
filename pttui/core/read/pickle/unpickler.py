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
import mmap
import pickle

from pttui.core.base import dtypes
from pttui.core.read.pickle import memoguard
from pttui.core.base import deadline
from pttui.core.base.meta import ReadError
from pttui.core.read.pickle.stubs import (Device, DType, Opaque, OpaqueMeta, OrderedDict, StorageType,
                              StorageView)
from pttui.core.read.pickle.tensorbuild import REBUILDERS, TensorBuilder, is_int

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["DType", "Device", "Opaque", "RestrictedUnpickler", "StorageType", "StorageView",
           "called_globals"]

_MAX_GLOBALS = 100_000


def _size(*args: Any) -> tuple:
    return tuple(args[0]) if args and isinstance(args[0], (tuple, list)) else ()


def _device(*args: Any) -> Device:
    if len(args) == 1 and isinstance(args[0], str):
        return Device(args[0])
    if len(args) == 2 and isinstance(args[0], str) and is_int(args[1]) and 0 <= args[1] < 1 << 16:
        return Device(f"{args[0]}:{args[1]}")
    return Device("unknown")


def _codecs_encode(*args: Any) -> Any:
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin1")
    return Opaque()


_MAX_BUILT = 1 << 20  # bytearray(n) allocates n bytes: a 10-byte pickle asking for 8 GB


def _safe_builtin(cls: type):
    def build(*args: Any) -> Any:
        try:
            if all(isinstance(a, (list, tuple, str, bytes, float, set, frozenset))
                   or (type(a) is int and abs(a) <= _MAX_BUILT) for a in args):
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


class _DTypeRecorder(OpaqueMeta):
    """``numpy.dtype``: records each code it is called with (``'f8'``). torch's weights-only
    unpickler needs the class of every dtype it builds (``numpy.dtypes.Float64DType``)
    allow-listed too, a global no pickle names: the globals scan predicts them from these."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Opaque:
        code, sink = (args[0] if args else None), cls.sink  # type: ignore[attr-defined]
        if type(code) is str and len(code) <= 16 and len(sink) < 64:
            sink.add(code)
        return super().__call__(*args, **kwargs)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles into inert stand-ins; records every global the stream references."""

    def __init__(self, data: bytes | BinaryIO, persistent_load, label: str,
                 scanned: int | None = None) -> None:
        """``scanned``: the pickle's length, when the caller already ran memoguard over it
        (:func:`scan_record`), for a stream positioned at its start."""
        self.persistent_load = persistent_load  # read by __init__: one call per storage, not two
        self._stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else None
        super().__init__(data if self._stream is None else self._stream)
        self._source = data
        self._scanned = scanned
        self._loaded = False
        self.label = label
        self.problems: list[str] = []
        self.builder = TensorBuilder(self.problems)
        self.globals: dict[str, type | Any] = {}
        self.attribute_paths: set[str] = set()  # "mod.Class.attr": reaches through attributes
        self.numpy_dtypes: set[str] = set()  # numpy.dtype('f8', ...) codes the pickle builds
        self._classes: dict[tuple[str, str], Any] = {}

    def load(self) -> Any:
        """The pickle at the source's position, after memoguard checked it. Once only:
        a second load would read what the first buffered, which memoguard never saw."""
        if self._loaded:
            raise RuntimeError("a RestrictedUnpickler reads one pickle; make another")
        self._loaded = True
        src = self._source
        if self._scanned is not None:
            size = self._scanned
        elif isinstance(src, (bytes, bytearray)):
            size = memoguard.check(src, 0, self.label)
        else:
            size = _check_stream(src, self.label)
        deadline.pickle_measured(size)  # a guarded reader's clock runs while unpickling
        try:
            return super().load()
        finally:
            deadline.pickle_done()

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
        method = REBUILDERS.get((module, name))
        if method:
            return getattr(self.builder, method)
        if (module, name) in _HARMLESS:
            return _HARMLESS[(module, name)]
        if (module, name) == ("numpy", "dtype"):
            return _DTypeRecorder(name, (Opaque,), {"__slots__": (), "qualname": "numpy.dtype",
                                                     "called": False, "sink": self.numpy_dtypes})
        if module in ("torch", "torch.cuda", "torch.storage"):
            if name in dtypes.STORAGE_DTYPES:
                return StorageType(dtypes.STORAGE_DTYPES[name])
            if name == "TypedStorage":
                return StorageType("uint8")
            dt = dtypes.canonical(name) if module == "torch" else None
            if dt is not None:
                return DType(dt)
        return OpaqueMeta(name if name.isidentifier() else "Opaque", (Opaque,),
                           {"__slots__": (), "qualname": f"{module}.{name}", "called": False})

    def run(self) -> Any:
        """``load()``, with every failure a one-line ReadError; then what only unpickling
        needed is let go (see ``_release``)."""
        try:
            return self._load_checked()
        finally:
            self._release()

    def _release(self) -> None:
        """Drop the memo (every memoized object: the persistent ids, rebuild arguments and
        hook dicts of each tensor, ~30 MB at 100,000 tensors, otherwise alive as long as
        the unpickler) and the pickle bytes this unpickler wrapped. A caller's stream is
        left as it is: the legacy reader goes on reading it."""
        self.memo.clear()
        if self._stream is not None:
            self._stream.close()
            self._stream = self._source = None

    def _load_checked(self) -> Any:
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
                LookupError, ArithmeticError, struct_error) as err:
            raise ReadError(f"{self.label}: the pickle is damaged ({_short(err)}); "
                            "the file may be truncated or not a PyTorch checkpoint") from None


try:
    from struct import error as struct_error
except ImportError:  # pragma: no cover
    struct_error = ValueError  # type: ignore[misc,assignment]


def _check_stream(f: BinaryIO, label: str) -> int:
    """memoguard over a file from its current position to its end; the pickle's length."""
    start = f.tell()
    if isinstance(f, io.BytesIO):
        with f.getbuffer() as buf:
            return memoguard.check(buf, start, label) - start
    stop = _check_mapped(f, start, None, label)
    if stop is None:  # empty, or not a plain file
        rest = f.read()
        f.seek(start)
        return memoguard.check(rest, 0, label)
    return stop - start


def scan_record(f: BinaryIO, start: int, end: int, label: str) -> int | None:
    """memoguard over ``f``'s bytes ``[start, end)``: the pickle's length when it ends
    inside them (so it can be unpickled straight from ``f``, with no copy in memory),
    else None (truncated: read the bytes, and let the unpickler say so)."""
    stop = _check_mapped(f, start, end, label)
    return stop - start if stop is not None and stop < end else None


def _check_mapped(f: BinaryIO, start: int, end: int | None, label: str) -> int | None:
    """memoguard over ``f`` through a read-only map (``end`` None: to the file's end);
    None where ``f`` cannot be mapped or is shorter than ``end``."""
    try:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    with view:
        if end is not None and end > len(view):
            return None
        return memoguard.check(view, start, label, end)


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:160]


def called_globals(unpickler: RestrictedUnpickler) -> set[str]:
    """Names of opaque globals the pickle called like functions (REDUCE)."""
    called = {n for n, g in unpickler.globals.items()
              if isinstance(g, type) and issubclass(g, Opaque) and getattr(g, "called", False)}
    return called | unpickler.attribute_paths
