"""Torch dtype and storage-class names, known without importing torch.

The tables mirror torch's own (a test compares them with the installed torch);
pttui needs them to size tensors and to read storages by name alone.
"""

from __future__ import annotations

# dtype name -> bits per element (torch's itemsize * 8; sub-byte dtypes occupy a byte)
_BITS: dict[str, int] = {
    "float64": 64, "float32": 32, "float16": 16, "bfloat16": 16,
    "complex128": 128, "complex64": 64, "complex32": 32, "bcomplex32": 32,
    "int64": 64, "int32": 32, "int16": 16, "int8": 8,
    "uint64": 64, "uint32": 32, "uint16": 16, "uint8": 8, "bool": 8,
    "qint32": 32, "qint8": 8, "quint8": 8, "quint4x2": 8, "quint2x4": 8,
    "float8_e5m2": 8, "float8_e4m3fn": 8, "float8_e5m2fnuz": 8, "float8_e4m3fnuz": 8,
    "float8_e8m0fnu": 8, "float4_e2m1fn_x2": 8,
    "bits8": 8, "bits16": 16, "bits1x8": 8, "bits2x4": 8, "bits4x2": 8,
    **{f"uint{i}": 8 for i in range(1, 8)},
    **{f"int{i}": 8 for i in range(1, 8)},
}

# aliases torch accepts as attribute names (torch.float is torch.float32)
ALIASES: dict[str, str] = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64",
    "int": "int32", "short": "int16", "bit": "bool", "cfloat": "complex64",
    "cdouble": "complex128", "chalf": "complex32",
}

# legacy typed storage class name -> dtype; UntypedStorage holds bytes
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "QInt8Storage": "qint8", "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}

# legacy tensor type name (torch.FloatTensor) -> dtype
TENSOR_TYPES: dict[str, str] = {
    name.replace("Storage", "Tensor"): dt for name, dt in STORAGE_DTYPES.items()
    if name not in ("UntypedStorage",) and not name.startswith("Q") and "Complex" not in name
}

# safetensors dtype tags -> torch dtype names
SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64", "C128": "complex128", "F4": "float4_e2m1fn_x2",
}


def canonical(name: str) -> str | None:
    """The canonical dtype name for ``name`` (``torch.`` prefix and aliases allowed)."""
    name = name.removeprefix("torch.")
    name = ALIASES.get(name, name)
    return name if name in _BITS else None


def is_dtype(name: str) -> bool:
    return canonical(name) is not None


def itemsize_bits(dtype: str) -> int:
    """Bits per element; unknown dtypes count as one byte so sizes stay conservative."""
    return _BITS.get(dtype, 8)


def itemsize(dtype: str) -> int:
    return max(1, itemsize_bits(dtype) // 8)


def is_floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex", "bcomplex"))


ALL_DTYPES: tuple[str, ...] = tuple(_BITS)
