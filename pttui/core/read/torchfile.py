"""Read torch.save files (zip and legacy stream) and TorchScript archives as metadata.

The pickle is run through :class:`RestrictedUnpickler`; storages are never read,
only described by the persistent ids torch wrote (record key, dtype, element
count, stored location).
"""

from __future__ import annotations

import os
import pickle
import struct
from itertools import islice

from pttui.core.base import dtypes
from pttui.core.base.meta import ReadError, StorageRef
from pttui.core.read.pickle.unpickler import (DType, RestrictedUnpickler, StorageType, StorageView,
                                  scan_record)
from pttui.core.read.zipindex import ZipEntry, ZipIndex, fold, storage_number
from pttui.core.read.zipindex import _safe

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

MAX_PICKLE_BYTES = 1 << 31  # data.pkl larger than 2 GiB is not a checkpoint we can trust
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_new = tuple.__new__  # a NamedTuple without its Python-level __new__ (once per storage)
_MAX_LOCATION = 256  # "cuda:0"; a megabyte-long location would be copied into every row


class Unpickled:
    """What a read hands the reader: the object tree, the unpickler (its globals), the
    format, problems and notes, and (legacy files) each storage's byte offset."""

    __slots__ = ("root", "unpickler", "format", "problems", "notes", "offsets")

    def __init__(self, root: Any, unpickler: RestrictedUnpickler, format: str,
                 problems: list[str]) -> None:
        self.root = root
        self.unpickler = unpickler
        self.format = format
        self.problems = problems
        self.notes: list[str] = []
        self.offsets: dict[str, int] = {}  # storage key -> byte offset


class _Refs:
    """Storage refs by key, in the order the pickle first names them. torch names them
    0, 1, 2, ...: those sit in a list (8 bytes a storage, where a dict of 100,000 takes
    5 MB, held while unpickling); any other key goes to a dict."""

    __slots__ = ("seq", "other")

    def __init__(self) -> None:
        self.seq: list[StorageRef] = []
        self.other: dict[str, StorageRef] = {}

    def get(self, key: str) -> StorageRef | None:
        k = storage_number(key)
        return self.seq[k] if 0 <= k < len(self.seq) else self.other.get(key)

    def add(self, key: str, ref: StorageRef) -> None:
        if storage_number(key) == len(self.seq):
            self.seq.append(ref)
        else:
            self.other[key] = ref

    def items(self) -> Iterator[tuple[str, StorageRef]]:
        for ref in self.seq:
            yield ref.key, ref
        yield from self.other.items()


class _Storages:
    """persistent_load for torch's ('storage', type, key, location, numel[, view]) ids.

    ``arity`` is the length torch unpacks: 5 in a zip archive, 6 (with the view) in
    a legacy stream. torch fails on any other length, so pttui refuses it too rather
    than read a file torch cannot load.
    """

    def __init__(self, label: str, shard: str | None, arity: int) -> None:
        self.label, self.shard, self.arity = label, shard, arity
        self.tokens = _Refs()
        self.problems: list[str] = []
        self._dtypes: dict[str, str] = {}  # FloatStorage -> "float32", one string for all

    def __call__(self, pid: Any) -> Any:
        """Once per storage: the hot path of reading (checks are type() tests)."""
        n = len(pid) if type(pid) is tuple else 0
        if n != 5 and n != 6 or pid[0] != "storage":
            if n >= 2 and pid[0] == "module":
                return pid[1]  # legacy whole-model pickles: ('module', cls, file, source)
            raise ReadError(f"{self.label}: the pickle references data pttui does not "
                            f"recognise ({_short_repr(pid)}); it is not a torch.save file")
        if n != self.arity:
            where = "a zip checkpoint" if self.arity == 5 else "a legacy checkpoint"
            raise ReadError(f"{self.label}: a storage reference has {n} fields "
                            f"where {where} has {self.arity}; torch cannot load this "
                            "file (it was written by another tool, or tampered with)")
        _, stype, key, location, numel = pid if n == 5 else pid[:5]
        if (type(stype) not in (StorageType, DType) or type(key) is not str
                or type(location) is not str or type(numel) is not int
                or not 0 <= numel < 1 << 63):
            if isinstance(stype, type) and isinstance(getattr(stype, "qualname", 0), str):
                raise ReadError(f"{self.label}: a storage has the unknown type "
                                f"{_safe(stype.qualname)}; torch cannot load it either")
            raise ReadError(f"{self.label}: a storage reference is malformed "
                            f"({_short_repr(pid)}); the file is damaged")
        ref = self.tokens.get(key)
        if ref is None:
            if len(location) > _MAX_LOCATION or not location.isprintable():
                location = self._odd_location(key, location)
            dtype = self._dtypes.get(stype)
            if dtype is None:
                dtype = self._dtypes[stype] = str(stype)
            ref = _new(StorageRef, (key, dtype, numel, location, self.shard))
            self.tokens.add(key, ref)
        if n == 6:
            view = pid[5]
            if type(view) is tuple and len(view) == 3 and type(view[1]) is int:
                return StorageView(ref, view[1])
        return ref

    def _odd_location(self, key: str, location: str) -> str:
        """A location no device has: kept escaped and short, so no escape code or
        megabyte string reaches a terminal or every row of the output."""
        what = (f"a location of {len(location):,} characters" if len(location) > _MAX_LOCATION
                else "a location with control characters")
        self.problems.append(f"storage {_safe(key)} names {what}; torch cannot map it")
        return _safe(location, 40)


def _short_repr(x: Any) -> str:
    """A persistent id for a message: bounded (a memo bomb inside would repr forever)."""
    import reprlib  # error messages only: not imported on every read

    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxtuple, bounded.maxlist, bounded.maxdict = 3, 6, 4, 4
    try:
        text = bounded.repr(x) if isinstance(x, (str, int, tuple, bytes)) else type(x).__name__
    except (ValueError, RecursionError):  # a 5,000-digit int
        text = type(x).__name__
    return text[:80]


def _unpickle(data: bytes | BinaryIO, storages: _Storages, label: str,
              scanned: int | None = None) -> RestrictedUnpickler:
    up = RestrictedUnpickler(data, storages, label, scanned)
    up.root = up.run()  # type: ignore[attr-defined]
    return up


def _unpickle_record(f: BinaryIO, index: ZipIndex, pkl: ZipEntry, storages: _Storages,
                     label: str) -> tuple[RestrictedUnpickler, bytes]:
    """data.pkl unpickled straight from the file when it is stored whole (no copy of it in
    memory: 12 MB at 100,000 keys, held while the tree is built); else from its bytes.
    Also its first bytes (the protocol)."""
    if pkl.method == 0:
        start = index.data_offset(pkl)
        scanned = scan_record(f, start, start + pkl.size, label)
        if scanned is not None:
            f.seek(start)
            head = f.read(3)
            f.seek(start)
            return _unpickle(f, storages, label, scanned), head
    data = index.read(pkl)
    return _unpickle(data, storages, label), data[:3]


def read_zip(f: BinaryIO, index: ZipIndex, label: str, shard: str | None) -> Unpickled:
    """Read what torch would: names matched as miniz matches them (ASCII case ignored);
    an archive where that match is ambiguous is refused."""
    if index.duplicates:
        raise ReadError(f"{label}: the zip holds two records named {_safe(index.duplicates[0])} "
                        "(ignoring case, as torch does); which one torch loads depends on "
                        "where they sit, and other readers pick differently: refusing as "
                        "ambiguous")
    names = list(islice(index.entries, 2000))  # case-folded; the first ones tell enough
    if not names:
        raise ReadError(f"{label}: the zip archive is empty; not a checkpoint")
    first = names[0]
    if "/" not in first:
        if any(n.endswith(".npy") for n in names[:50]):
            raise ReadError(f"{label}: a NumPy .npz archive, not a PyTorch checkpoint; "
                            "load it with numpy.load")
        raise ReadError(f"{label}: records sit at the archive root; this zip was not written "
                        "by torch.save (torch refuses it too)")
    prefix = first.split("/", 1)[0] + "/"
    scripted = f"{prefix}constants.pkl" in index.entries or any(
        n.startswith(f"{prefix}code/") for n in names[:2000])
    pkl = index.entries.get(f"{prefix}data.pkl")
    if pkl is None:
        if any(n.endswith(".npy") for n in names[:50]):
            raise ReadError(f"{label}: a NumPy .npz archive, not a PyTorch checkpoint; "
                            "load it with numpy.load")
        raise ReadError(f"{label}: the zip has no data.pkl: the save was interrupted before it "
                        "finished (crashed or out of disk); the weights cannot be recovered "
                        "from this file")
    if pkl.size > MAX_PICKLE_BYTES:
        raise ReadError(f"{label}: data.pkl claims {pkl.size:,} bytes; refusing to read it")
    storages = _Storages(label, shard, 5)
    up, head = _unpickle_record(f, index, pkl, storages, label)
    framed = head[:1] == b"\x80" and head[1:2] >= b"\x04" and head[2:3] == b"\x95"
    out = Unpickled(up.root, up, "torchscript" if scripted else "torch-zip",
                    storages.problems + up.problems)
    if framed:
        out.problems.append("the pickle uses protocol-4 frames, which torch.load(weights_only="
                            "True) cannot read ('Unsupported operand 149'); re-save it with "
                            "torch.save's default protocol")
    _check_archive(index, prefix, pkl, out)
    _check_records(index, prefix, storages, out)
    return out


def _check_archive(index: ZipIndex, prefix: str, pkl: ZipEntry, out: Unpickled) -> None:
    """What torch would trip on, or what another reader would see differently."""
    differs = index.local_disagreement(pkl)
    if differs:
        out.problems.append(f"{_safe(pkl.name)}: {differs}; zip readers disagree on this file (torch "
                            "and pttui follow the central directory); it may be crafted to "
                            "fool a scanner")
    if pkl.method != 0:
        out.notes.append("data.pkl is compressed (torch.save never does that): another tool "
                         "repacked this archive")
    exact = next(iter(index.entries.values())).name.split("/", 1)[0] + "/"
    outside = next((e.name for e in index.entries.values() if not e.name.startswith(exact)), None)
    if outside is not None:  # torch checks every name against the first one's folder, by case
        out.problems.append(f"record {_safe(outside)} is not in the archive folder "
                            f"{_safe(exact)}; torch refuses to load this file")
    if f"{prefix}version" not in index.entries and f"{prefix}.data/version" not in index.entries:
        out.problems.append("the archive has no version record; torch refuses to load it")
    order = index.entries.get(f"{prefix}byteorder")
    if order is not None and index.read(order, 16).strip() == b"big":
        out.notes.append("tensors are stored big-endian")


def _check_records(index: ZipIndex, prefix: str, storages: _Storages, out: Unpickled) -> None:
    """Every storage needs its record, of the declared size, stored (once per storage:
    the hot path)."""
    data, bits, record = fold(prefix) + "data/", dtypes.itemsize_bits, index.data_record
    compressed = 0
    for key, ref in storages.tokens.items():
        rec = record(data, key)  # (size, compressed)
        if rec is None:
            out.problems.append(f"storage {_safe(key)} is referenced but its data record is "
                                "missing; torch will fail to load this file")
        elif rec[0] != (ref.numel * bits(ref.dtype) + 7) // 8:  # StorageRef.nbytes, inlined
            # torch 2.x refuses any difference, not only a short one
            out.problems.append(f"storage {_safe(key)} declares {ref.nbytes:,} bytes but its "
                                f"record holds {rec[0]:,}; the file is damaged and torch "
                                "refuses it")
        elif rec[1]:
            compressed += 1
    if compressed:
        out.problems.append(f"{compressed} storage record{'s are' if compressed > 1 else ' is'} "
                            "compressed: torch.load reads them only with mmap=False (with mmap=True it reads the compressed "
                            "bytes as values), and pttui cannot export them; re-save the file "
                            "with torch.save")


def read_legacy(f: BinaryIO, size: int, label: str, shard: str | None) -> Unpickled:
    """The pre-1.6 stream: magic, protocol, sys_info, the object, storage keys, raw data."""
    f.seek(0)
    # One unpickler per pickle, as torch's pickle.load(f) calls do: an unpickler keeps
    # what it buffered (a protocol-4 frame) for its next load, which f.tell() never sees.
    try:
        magic = RestrictedUnpickler(f, _reject_pid(label), label).load()
    except ReadError:
        raise  # memoguard's refusal says more than "not this format"
    except Exception:  # noqa: BLE001 - any other failure here means "not this format"
        magic = None
    if magic != LEGACY_MAGIC:
        raise ReadError(f"{label}: a Python pickle that torch.save did not write (no torch "
                        "magic number); torch.load refuses it")
    try:
        protocol = RestrictedUnpickler(f, _reject_pid(label), label).load()
        sys_info = RestrictedUnpickler(f, _reject_pid(label), label).load()
    except ReadError:
        raise
    except Exception:  # noqa: BLE001
        raise ReadError(f"{label}: the legacy header is damaged; the file is truncated or "
                        "not a checkpoint") from None
    if protocol != LEGACY_PROTOCOL:
        raise ReadError(f"{label}: unknown legacy protocol version {_short_repr(protocol)}")
    storages = _Storages(label, shard, 6)
    up = RestrictedUnpickler(f, storages, label)
    up.root = up.run()  # type: ignore[attr-defined]
    out = Unpickled(up.root, up, "torch-legacy", storages.problems + up.problems)
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
