"""Class every global a pickle references: allowed, blocked or dangerous.

Allow-list semantics end to end (docs/security.md says why for each name):

- ``allowed``: torch's weights-only unpickler accepts it (a test checks the installed
  torch agrees);
- ``blocked``: refused by weights_only=True, but on pttui's curated list of data classes
  and reconstructors that only build data *whatever arguments torch calls them with*:
  the only globals pttui ever offers for allow-listing;
- ``dangerous``: everything else, under ``torch.*`` or not, called or only referenced,
  including names pttui has never seen. Allow-listing one lets the file call it with
  arguments of its choosing (and importing its module runs that module's code), so
  pttui never suggests it; the only way to such a load is the sandboxed, typed-consent
  load that says it will run that code.
"""

from __future__ import annotations

from collections.abc import Iterable

from pttui.core.base import dtypes
from pttui.core.base import humanize as hz
from pttui.core.base.meta import GlobalsScan

_TORCH_UTILS = ("_rebuild_device_tensor_from_cpu_tensor", "_rebuild_device_tensor_from_numpy",
                "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor",
                "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor",
                "_rebuild_sparse_tensor", "_rebuild_tensor", "_rebuild_tensor_v2",
                "_rebuild_tensor_v3", "_rebuild_wrapper_subclass")
_LEGACY_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long",
                 "Short")
_QSCHEMES = ("per_channel_affine", "per_channel_affine_float_qparams", "per_channel_symmetric",
             "per_tensor_affine", "per_tensor_symmetric")


def _allowed() -> frozenset[str]:
    names = {"_codecs.encode", "builtins.bytearray", "builtins.complex", "builtins.set",
             "collections.Counter", "collections.OrderedDict", "torch.Size", "torch.Tensor",
             "torch.device", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
             "torch._tensor._rebuild_from_type_v2", "torch.storage.TypedStorage",
             "torch.storage.UntypedStorage"}
    names.update(f"torch._utils.{n}" for n in _TORCH_UTILS)
    names.update(f"torch.{s}" for s in dtypes.STORAGE_DTYPES if s != "UntypedStorage")
    names.update(f"torch.{t}Tensor" for t in _LEGACY_TYPES)
    names.update(f"torch.cuda.{t}{k}" for t in _LEGACY_TYPES for k in ("Storage", "Tensor"))
    names.update(f"torch.cuda.Complex{t}Storage" for t in ("Double", "Float"))
    names.update(f"torch.{p}.{t}Tensor" for p in ("sparse", "cuda.sparse")
                 for t in _LEGACY_TYPES if t != "Bool")
    names.update(f"torch.{d}" for d in dtypes.ALL_DTYPES)
    names.update(f"torch.{q}" for q in _QSCHEMES)
    return frozenset(names)


ALLOWED: frozenset[str] = _allowed()

# Refused by weights_only=True, yet safe to allow-list: called with any arguments the
# pickle gives (themselves allowed or on this list), each only builds a value. One line
# each in docs/security.md; a property test feeds them hostile arguments under torch.load.
SAFE_TO_ALLOW: frozenset[str] = frozenset({
    "argparse.Namespace", "builtins.slice", "builtins.range", "builtins.frozenset",
    "collections.defaultdict", "collections.deque",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "uuid.UUID",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
    "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
    "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    # a torch.distributed.checkpoint folder's .metadata: dataclasses that store fields
    "torch.distributed.checkpoint.metadata.Metadata",
    "torch.distributed.checkpoint.metadata.StorageMeta",
    "torch.distributed.checkpoint.metadata.MetadataIndex",
    "torch.distributed.checkpoint.metadata.ChunkStorageMetadata",
    "torch.distributed.checkpoint.metadata.TensorStorageMetadata",
    "torch.distributed.checkpoint.metadata.BytesStorageMetadata",
    "torch.distributed.checkpoint.metadata.TensorProperties",
    "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
    "torch.distributed.checkpoint.filesystem._StorageInfo",
})
_NUMPY_DTYPES = "numpy.dtypes."  # numpy's dtype classes (Float64DType, ...): classes only


def _numpy_dtype_class(name: str) -> bool:
    rest = name[len(_NUMPY_DTYPES):]
    return name.startswith(_NUMPY_DTYPES) and rest.endswith("DType") and rest.isidentifier()


def classify(name: str, called: bool = True) -> str:
    """``allowed`` | ``blocked`` | ``dangerous`` for one ``module.name`` global.

    ``called`` (REDUCE, NEWOBJ, INST, OBJ or BUILD reached it) no longer changes the
    answer: a name is safe to allow-list or it is not, whatever the pickle does with it.
    """
    if name in ALLOWED:
        return "allowed"
    if name in SAFE_TO_ALLOW or _numpy_dtype_class(name):
        return "blocked"
    return "dangerous"


_NUMPY_DTYPE_CLASSES = {
    "b1": "BoolDType", "i1": "Int8DType", "u1": "UInt8DType", "i2": "Int16DType",
    "u2": "UInt16DType", "i4": "Int32DType", "u4": "UInt32DType", "i8": "Int64DType",
    "u8": "UInt64DType", "f2": "Float16DType", "f4": "Float32DType", "f8": "Float64DType",
    "f10": "LongDoubleDType", "f12": "LongDoubleDType", "f16": "LongDoubleDType",
    "c8": "Complex64DType", "c16": "Complex128DType", "c20": "CLongDoubleDType",
    "c24": "CLongDoubleDType", "c32": "CLongDoubleDType", "M8": "DateTime64DType",
    "m8": "TimeDelta64DType", "O4": "ObjectDType", "O8": "ObjectDType",
}
_NUMPY_FLEXIBLE = {"V": "VoidDType", "U": "StrDType", "S": "BytesDType"}


def numpy_dtype_classes(codes: Iterable[str]) -> list[str]:
    """The ``numpy.dtypes`` classes of the dtypes a pickle builds with ``numpy.dtype(code)``.

    ``np.dtype('f8')`` pickles as ``numpy.dtype('f8', False, True)`` plus a BUILD; torch's
    weights-only unpickler runs BUILD only on an allow-listed type, so loading it needs
    ``numpy.dtypes.Float64DType`` as well as ``numpy.dtype`` (NumPy >= 1.25). No GLOBAL
    names that class, so it is predicted here from the code.
    """
    out: set[str] = set()
    for code in codes:
        name = _NUMPY_DTYPE_CLASSES.get(code)
        if name is None and code[:1] in _NUMPY_FLEXIBLE and (code[1:].isdigit() or
                                                             code[1:] == ""):
            name = _NUMPY_FLEXIBLE[code[:1]]
        if name is not None:
            out.add(f"numpy.dtypes.{name}")
    return sorted(out)


# In a TorchScript archive: the archive's own compiled classes and TorchScript's list
# builders. torch.jit.load makes them from the archive's TorchScript code, which no Python
# import or allow-list reaches; torch.load refuses the archive whatever is allowed.
_TORCHSCRIPT_TYPES = ("__torch__.", "torch.jit._pickle.")


def scan(names: Iterable[str], called: set[str], torchscript: bool = False,
         first_calls: dict[str, tuple] | None = None) -> GlobalsScan:
    """Each name classed; ``torchscript``: the pickle is a TorchScript archive's, whose own
    types are refused by torch.load (``blocked``) rather than code a load would import.
    ``first_calls``: name -> the arguments of its first call, for the dangerous ones' lines."""
    out = GlobalsScan()
    for name in sorted(set(names)):
        cls = classify(name, name in called)
        if torchscript and cls == "dangerous" and name.startswith(_TORCHSCRIPT_TYPES):
            cls = "blocked"
        getattr(out, cls).append(name)
    first_calls = first_calls or {}
    out.calls = [call_line(n, first_calls[n]) for n in out.dangerous
                 if first_calls.get(n) is not None][:MAX_CALLS]
    return out


MAX_CALLS = 8
_ARG_CHARS = 80
_CALL_CHARS = 200


def call_line(name: str, args: tuple) -> str:
    """``posix.system('touch /tmp/x')``: a call as the payload makes it, printable on one
    line (reprs escape newlines and control characters), cut to a readable length."""
    text = f"{hz.printable(name)}({', '.join(_arg(a, 2) for a in args)})"
    return text if len(text) <= _CALL_CHARS else text[:_CALL_CHARS - 2] + "…)"


def _arg(value: object, depth: int) -> str:
    from pttui.core.read.pickle.stubs import Opaque  # the reader's own stand-ins

    if isinstance(value, (str, bytes)):
        text = repr(value[:_ARG_CHARS])
        return text + ("…" if len(value) > _ARG_CHARS else "")
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)[:_ARG_CHARS]
    if isinstance(value, Opaque):
        return f"<{type(value).qualname}>"
    if isinstance(value, (list, tuple)) and depth > 0:
        inner = ", ".join(_arg(v, depth - 1) for v in list(value)[:4])
        more = ", …" if len(value) > 4 else ""
        return f"[{inner}{more}]" if isinstance(value, list) else f"({inner}{more})"
    if isinstance(value, dict) and depth > 0:
        items = list(value.items())[:4]
        inner = ", ".join(f"{_arg(k, 0)}: {_arg(v, depth - 1)}" for k, v in items)
        return "{" + inner + (", …" if len(value) > 4 else "") + "}"
    return f"<{type(value).__name__}>"


def scan_opcodes(data: bytes, limit: int = 2_000_000) -> GlobalsScan:
    """A fallback for pickles the restricted unpickler could not finish.

    Walks opcodes without building objects; globals whose use cannot be told
    apart are treated as called (the conservative choice).
    """
    import pickletools  # only for a damaged pickle: not imported on every read

    names: set[str] = set()
    strings: list[str] = []
    memo: dict[int, str] = {}
    try:
        for i, (op, arg, _pos) in enumerate(pickletools.genops(data)):
            if i > limit:
                break
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.add(arg.replace(" ", "."))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                             "SHORT_BINSTRING", "BINSTRING", "STRING"):
                strings.append(str(arg))
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE") and strings:
                key = arg if arg is not None else len(memo)
                memo[int(key)] = strings[-1]
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                strings.append(memo[int(arg)])
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.add(f"{strings[-2]}.{strings[-1]}")
            if op.name == "STOP":
                break
    except Exception:  # noqa: BLE001 - a damaged stream still yields what came before
        pass
    return scan(names, called=set(names))
