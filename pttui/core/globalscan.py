"""Class every global a pickle references: allowed, blocked (harmless) or dangerous.

``allowed`` mirrors torch's weights-only unpickler (a test checks the installed
torch agrees). Anything unknown is never allowed: an unknown *class* that is only
instantiated is ``blocked`` (a full load would import its module), an unknown
*function* the pickle calls is ``dangerous`` (a full load would run it).
"""

from __future__ import annotations

from collections.abc import Iterable

from pttui.core import dtypes
from pttui.core.meta import GlobalsScan

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

# Refused by weights_only=True, but a full load would only build data from them.
HARMLESS: frozenset[str] = frozenset({
    "argparse.Namespace", "builtins.slice", "builtins.range", "builtins.frozenset",
    "builtins.list", "builtins.dict", "builtins.tuple", "builtins.int", "builtins.float",
    "builtins.str", "builtins.bytes", "builtins.bool", "builtins.object",
    "collections.defaultdict", "collections.deque", "copyreg._reconstructor",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath", "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "typing.Any", "enum.Enum",
    # TorchScript archives rebuild their constants with these
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensor_from_id", "torch.jit._pickle.restore_type_tag",
})
_HARMLESS_PREFIXES = ("numpy.dtypes.", "omegaconf.", "torch.nn.modules.", "torch.nn.parameter.",
                      "__torch__.")

# Module prefixes whose globals can run code, touch files or the network.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle",
    "_pickle", "cPickle", "dill", "marshal", "ctypes", "runpy", "code", "codeop", "pty",
    "webbrowser", "requests", "urllib", "urllib2", "urllib3", "httplib", "http", "ftplib",
    "telnetlib", "smtplib", "multiprocessing", "asyncio", "pdb", "bdb", "timeit", "cProfile",
    "profile", "trace", "doctest", "platform", "pip", "setuptools", "distutils", "pydoc",
    "signal", "threading", "_thread", "shelve", "zipimport", "imp", "types", "functools",
    "operator", "_operator", "io", "_io", "tempfile", "glob", "pathlib._local", "sqlite3",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.lib.npyio", "torch.hub",
    "torch.jit", "torch._inductor", "torch.utils.cpp_extension", "torch.distributed.rpc",
    "torch.serialization", "torch._dynamo", "torch.fx", "torch.package", "builtins",
    "__builtin__", "__builtins__", "_codecs", "codecs", "posixpath", "ntpath", "logging",
)


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _is_dangerous_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _DANGEROUS_MODULES)


def classify(name: str, called: bool) -> str:
    """``allowed`` | ``blocked`` | ``dangerous`` for one ``module.name`` global."""
    if name in ALLOWED:
        return "allowed"
    if called and name.startswith(_HARMLESS_PREFIXES) and not name.startswith("numpy.dtypes.") \
            and name not in HARMLESS:
        return "dangerous"
    if name in HARMLESS or name.startswith(_HARMLESS_PREFIXES):
        return "blocked"
    if _is_dangerous_module(_module_of(name)) or name == "torch.load":
        return "dangerous"
    if called and not name.startswith("torch."):
        return "dangerous"
    return "blocked"


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


def scan(names: Iterable[str], called: set[str]) -> GlobalsScan:
    out = GlobalsScan()
    for name in sorted(set(names)):
        getattr(out, classify(name, name in called)).append(name)
    return out


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
