"""Read torch.save files (zip and legacy stream) and TorchScript archives as metadata.

The pickle is run through :class:`RestrictedUnpickler`; storages are never read,
only described by the persistent ids torch wrote (record key, dtype, element
count, stored location).
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pttui.core import dtypes
from pttui.core.meta import ReadError, StorageRef
from pttui.core.unpickler import DType, RestrictedUnpickler, StorageType, StorageView
from pttui.core.zipindex import ZipIndex

MAX_PICKLE_BYTES = 1 << 31  # data.pkl larger than 2 GiB is not a checkpoint we can trust
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


@dataclass
class Unpickled:
    root: Any
    unpickler: RestrictedUnpickler
    pickle_bytes: bytes | None
    format: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # storage key -> byte offset


class _Storages:
    """persistent_load for torch's ('storage', type, key, location, numel[, view]) ids."""

    def __init__(self, label: str, shard: str | None, records: set[str] | None) -> None:
        self.label, self.shard, self.records = label, shard, records
        self.tokens: dict[str, StorageRef] = {}
        self.problems: list[str] = []
        self.order: list[str] = []

    def __call__(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage":
            _, stype, key, location, numel = pid[:5]
            if (type(stype) not in (StorageType, DType) or type(key) is not str
                    or type(location) is not str or type(numel) is not int or numel < 0):
                raise ReadError(f"{self.label}: a storage reference is malformed "
                                f"({_short_repr(pid)}); the file is damaged")
            ref = self.tokens.get(key)
            if ref is None:
                ref = StorageRef(key, str(stype), numel, location, self.shard)
                self.tokens[key] = ref
                self.order.append(key)
                if self.records is not None and key not in self.records:
                    self.problems.append(f"storage {key} is referenced but its data record "
                                         "is missing; torch will fail to load this file")
            view = pid[5] if len(pid) == 6 else None
            if type(view) is tuple and len(view) == 3 and type(view[1]) is int:
                return StorageView(ref, view[1])
            return ref
        if type(pid) is tuple and len(pid) >= 2 and pid[0] == "module":
            return pid[1]  # legacy whole-model pickles: ('module', cls, file, source)
        raise ReadError(f"{self.label}: the pickle references data pttui does not "
                        f"recognise ({_short_repr(pid)}); it is not a torch.save file")


def _short_repr(x: Any) -> str:
    text = repr(x) if isinstance(x, (str, int, tuple, bytes)) else type(x).__name__
    return text[:80]


def _unpickle(data: bytes | BinaryIO, storages: _Storages, label: str) -> RestrictedUnpickler:
    up = RestrictedUnpickler(data, storages, label)
    up.root = up.run()  # type: ignore[attr-defined]
    return up


def read_zip(f: BinaryIO, index: ZipIndex, label: str, shard: str | None) -> Unpickled:
    if index.duplicates:
        raise ReadError(f"{label}: the zip holds duplicate records ({index.duplicates[0]}); "
                        "torch and other readers disagree on such files; refusing as ambiguous")
    names = list(index.entries)
    if not names:
        raise ReadError(f"{label}: the zip archive is empty; not a checkpoint")
    first = names[0]
    if "/" not in first:
        raise ReadError(f"{label}: records sit at the archive root; this zip was not written "
                        "by torch.save (torch refuses it too)")
    prefix = first.split("/", 1)[0] + "/"
    scripted = f"{prefix}constants.pkl" in index.entries or any(
        n.startswith(f"{prefix}code/") for n in names[:2000])
    pkl = index.entries.get(f"{prefix}data.pkl")
    if pkl is None:
        if any(n.endswith(".npy") for n in names[:50]):
            raise ReadError(f"{label}: a NumPy .npz archive, not a PyTorch checkpoint")
        raise ReadError(f"{label}: the zip has no data.pkl: the save was interrupted before it "
                        "finished (crashed or out of disk); the weights cannot be recovered "
                        "from this file")
    if pkl.size > MAX_PICKLE_BYTES:
        raise ReadError(f"{label}: data.pkl claims {pkl.size:,} bytes; refusing to read it")
    data = index.read(pkl)
    records = {n[len(prefix) + 5:] for n in names if n.startswith(prefix + "data/")}
    storages = _Storages(label, shard, records)
    up = _unpickle(data, storages, label)
    out = Unpickled(up.root, up, data, "torchscript" if scripted else "torch-zip",
                    storages.problems + up.problems)
    order = index.entries.get(f"{prefix}byteorder")
    if order is not None and index.read(order, 16).strip() == b"big":
        out.notes.append("tensors are stored big-endian")
    for key in storages.order:
        rec = index.entries.get(f"{prefix}data/{key}")
        ref = storages.tokens[key]
        if rec is not None and rec.size < ref.nbytes:
            out.problems.append(f"storage {key} declares {ref.nbytes:,} bytes but its record "
                                f"holds {rec.size:,}; the file is damaged")
    return out


def read_legacy(f: BinaryIO, size: int, label: str, shard: str | None) -> Unpickled:
    """The pre-1.6 stream: magic, protocol, sys_info, the object, storage keys, raw data."""
    f.seek(0)
    head = RestrictedUnpickler(f, _reject_pid(label), label)
    try:
        magic = head.load()
    except Exception:  # noqa: BLE001 - any failure here means "not this format"
        magic = None
    if magic != LEGACY_MAGIC:
        raise ReadError(f"{label}: a Python pickle that torch.save did not write (no torch "
                        "magic number); torch.load refuses it")
    try:
        protocol = head.load()
        sys_info = head.load()
    except Exception:  # noqa: BLE001
        raise ReadError(f"{label}: the legacy header is damaged; the file is truncated or "
                        "not a checkpoint") from None
    if protocol != LEGACY_PROTOCOL:
        raise ReadError(f"{label}: unknown legacy protocol version {protocol!r}")
    storages = _Storages(label, shard, None)
    up = RestrictedUnpickler(f, storages, label)
    up.root = up.run()  # type: ignore[attr-defined]
    out = Unpickled(up.root, up, None, "torch-legacy", storages.problems + up.problems)
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        out.notes.append("tensors are stored big-endian")
    try:
        keys = RestrictedUnpickler(f, _reject_pid(label), label).load()
    except Exception:  # noqa: BLE001
        out.problems.append("the list of storages after the pickle is missing: the file is "
                            "truncated; torch will fail to load it")
        return out
    _locate_legacy_storages(f, size, keys, storages, out)
    return out


def _locate_legacy_storages(f: BinaryIO, size: int, keys: Any, storages: _Storages,
                            out: Unpickled) -> None:
    """Find each storage's bytes: an int64 element count, then the data."""
    if not isinstance(keys, list):
        out.problems.append("the storage key list is malformed; the file is damaged")
        return
    pos = f.tell()
    for key in keys:
        ref = storages.tokens.get(key) if isinstance(key, str) else None
        if ref is None:
            out.problems.append(f"storage {key!r} is listed but never referenced")
            return
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            out.problems.append(f"storage {key} is cut off: the file is truncated")
            return
        (numel,) = struct.unpack("<q", head)
        nbytes = numel * dtypes.itemsize(ref.dtype)
        if numel != ref.numel or pos + 8 + nbytes > size:
            out.problems.append(f"storage {key} is cut off or inconsistent: the file is "
                                "truncated or damaged")
            return
        out.offsets[key] = pos + 8
        pos += 8 + nbytes


def _reject_pid(label: str):
    def reject(pid: Any) -> Any:
        raise ReadError(f"{label}: unexpected persistent reference in the file header")
    return reject


def file_size(path: str) -> int:
    return os.stat(path).st_size


__all__ = ["Unpickled", "read_zip", "read_legacy", "pickle"]
