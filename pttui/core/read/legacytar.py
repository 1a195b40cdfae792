"""Read a legacy tar checkpoint (PyTorch 0.1-0.3) as metadata, without running it.

The layout, as ``torch.serialization._legacy_load`` -> ``legacy_load`` reads it:
a tar archive whose members are

- ``sys_info``: a pickled dict (``little_endian``, ``type_sizes``, ...);
- ``storages``: a pickled count, then per storage a pickled ``(key, location,
  storage_type)`` followed by the raw storage (an 8-byte element count, then the
  bytes); then a pickled list of storage views ``(view_key, root_key, offset,
  numel)``;
- ``tensors``: a pickled count, then per tensor a pickled ``(key, storage_key,
  tensor_type)`` followed by an int32 ``ndim``, 4 bytes of padding, ``ndim`` int64
  sizes, ``ndim`` int64 strides and an int64 storage offset;
- ``pickle``: the object, whose persistent ids are tensor (or storage) keys.

Every pickle goes through :class:`RestrictedUnpickler`. The tar headers are parsed
here (no ``tarfile``, nothing extracted): only the members' positions are needed,
each size is checked against the file, and a raw storage is skipped over, never
read. Time grows with the number of storages and tensors, not with the file size.
"""

from __future__ import annotations

import io
import struct

from pttui.core.base import dtypes
from pttui.core.base.meta import ReadError, StorageRef
from pttui.core.read.pickle.stubs import StorageType, StorageView
from pttui.core.read.pickle.tensorbuild import TensorBuilder, bad_tensor
from pttui.core.read.torchfile import MAX_PICKLE_BYTES, Unpickled, _short_repr
from pttui.core.read.pickle.unpickler import DType, RestrictedUnpickler
from pttui.core.read.zipindex import _safe

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

FORMAT = "torch-legacy-tar"
MEMBERS = ("sys_info", "pickle", "tensors", "storages")
MAX_MEMBERS = 10_000  # a torch tar holds four; refuse an archive built to be walked forever
MAX_ITEMS = 5_000_000  # storages or tensors: the object-tree walker's own node limit
MAX_RECORD = 1 << 20  # one (key, location, type) pickle: a few dozen bytes in practice
MAX_EXTENDED = 1 << 20  # a pax or GNU long-name header's own data
MAX_TENSORS_MEMBER = 1 << 30  # metadata only: ~60 bytes per tensor
_BLOCK = 512
_new = tuple.__new__


class _Member:
    __slots__ = ("name", "offset", "size")

    def __init__(self, name: str, offset: int, size: int) -> None:
        self.name, self.offset, self.size = name, offset, size


def read_tar(f: BinaryIO, size: int, label: str, shard: str | None = None) -> Unpickled:
    """The checkpoint's object tree, with every tensor as TensorMeta (no bytes read)."""
    try:
        return _read(f, size, label, shard)
    except ReadError as err:
        text = str(err)
        if "tar " in text or not text.startswith(f"{label}: "):
            raise
        raise ReadError(f"{label}: legacy tar checkpoint: {text[len(label) + 2:]}") from None


def _read(f: BinaryIO, size: int, label: str, shard: str | None) -> Unpickled:
    members = _members(f, size, label)
    missing = [m for m in MEMBERS if m not in members and m != "sys_info"]
    if missing:
        raise ReadError(f"{label}: a tar archive without the member(s) {', '.join(missing)} "
                        "a legacy torch checkpoint has; it is not a torch.save file, or it is "
                        "damaged (copy or download it again)")
    reader = _Reader(f, size, label, shard)
    little = reader.sys_info(members.get("sys_info"))
    storages, views = reader.storages(members["storages"], little)
    tensors = reader.tensors(members["tensors"], storages, views, little)
    root = reader.objects(members["pickle"], storages, views, tensors)
    out = Unpickled(root, reader.main, FORMAT, reader.problems)
    out.offsets = reader.offsets
    out.notes.append("legacy tar format (PyTorch 0.1-0.3): torch.load refuses it with "
                     "weights_only=True; only a full, unsafe load (weights_only=False) reads it")
    if not little:
        out.notes.append("tensors are stored big-endian")
    return out


# -- the tar headers ---------------------------------------------------------------------

def _members(f: BinaryIO, size: int, label: str) -> dict[str, _Member]:
    """Name -> position of each member, from the headers alone (data is skipped)."""
    found: dict[str, _Member] = {}
    pos, count = 0, 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while pos + _BLOCK <= size:
        f.seek(pos)
        block = f.read(_BLOCK)
        if len(block) < _BLOCK:
            break
        if block.count(0) == _BLOCK:
            break  # the end-of-archive marker
        count += 1
        if count > MAX_MEMBERS:
            raise ReadError(f"{label}: the tar archive holds over {MAX_MEMBERS:,} members; "
                            "a legacy torch checkpoint holds four: refusing to read it")
        if not _checksum_ok(block):
            raise ReadError(f"{label}: tar header {count} at byte {pos:,} fails its checksum; "
                            "the file is damaged (copy or download it again)")
        kind = block[156:157]
        member_size = _number(block[124:136])
        if member_size is None:
            raise ReadError(f"{label}: tar header {count} has an invalid size field; the file "
                            "is damaged (copy or download it again)")
        name = _cstr(block[0:100])
        if block[257:262] == b"ustar" and block[345:500].strip(b"\0"):
            name = _cstr(block[345:500]) + "/" + name
        data = pos + _BLOCK
        if kind in (b"x", b"L") and member_size > MAX_EXTENDED:
            raise ReadError(f"{label}: a tar extended header claims {member_size:,} bytes; "
                            "the file is damaged or hostile: refusing to read it")
        if "size" in pax:  # a pax record overrides the header (members of 8 GiB and more)
            member_size = _pax_int(pax["size"], label)
        if data + member_size > size:
            raise ReadError(f"{label}: tar member {_safe(name)} claims {member_size:,} bytes "
                            f"but the file ends {size - data:,} bytes later; it is truncated "
                            "(copy or download it again)")
        if kind == b"x":
            f.seek(data)
            pax = _pax_records(f.read(member_size), label)
        elif kind == b"L":
            f.seek(data)
            long_name = _cstr(f.read(member_size))
        elif kind == b"g":
            pass  # global pax header: nothing torch's members need
        else:
            name = pax.get("path", long_name if long_name is not None else name)
            if kind in (b"0", b"\0", b"7") and name in MEMBERS:
                if name in found:  # tarfile, as torch uses it, takes the last; others differ
                    raise ReadError(f"{label}: the tar archive holds two members named "
                                    f"{name}; which one a reader uses differs: refusing as "
                                    "ambiguous")
                found[name] = _Member(name, data, member_size)
            pax, long_name = {}, None
        pos = data + (member_size + _BLOCK - 1) // _BLOCK * _BLOCK
    if not found:
        raise ReadError(f"{label}: a tar archive, but not a legacy torch checkpoint (no "
                        "sys_info, pickle, tensors or storages member); unpack it with tar")
    return found


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    if stored is None:
        return False
    blank = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blank)
    signed = sum(b - 256 if b > 127 else b for b in blank)
    return stored in (unsigned, signed)


def _number(field: bytes) -> int | None:
    """A tar numeric field: octal digits, or GNU base-256 (high bit set)."""
    if field[:1] and field[0] & 0x80:
        if field[0] & 0x40:
            return None  # negative
        value = field[0] & 0x3F
        for b in field[1:]:
            value = value << 8 | b
        return value
    text = field.replace(b"\0", b" ").strip()
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):
        return None
    return int(text, 8)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pax_records(raw: bytes, label: str) -> dict[str, str]:
    """``"%d %s=%s\\n"`` records; only ``path`` and ``size`` matter here."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos, pos + 20)
        if space < 0 or not raw[pos:space].isdigit():
            break
        n = int(raw[pos:space])
        if n <= 0 or pos + n > len(raw):
            raise ReadError(f"{label}: a tar pax header is malformed; the file is damaged "
                            "(copy or download it again)")
        key, _, value = raw[space + 1:pos + n - 1].partition(b"=")
        if key in (b"path", b"size"):
            out[key.decode("ascii")] = value.decode("utf-8", "replace")
        pos += n
    return out


def _pax_int(text: str, label: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ReadError(f"{label}: a tar pax header holds an invalid size; the file is "
                        "damaged (copy or download it again)")
    return int(text)


# -- the members -------------------------------------------------------------------------

class _Reader:
    """Reads the members in torch's order, collecting globals and problems from every
    pickle into one place (the globals scan covers them all)."""

    def __init__(self, f: BinaryIO, size: int, label: str, shard: str | None) -> None:
        self.f, self.size, self.label, self.shard = f, size, label, shard
        self.problems: list[str] = []
        self.offsets: dict[str, int] = {}  # storage key -> absolute offset of its bytes
        self.builder = TensorBuilder(self.problems)
        self.main: RestrictedUnpickler | None = None
        self._classes: dict = {}
        self._globals: dict = {}
        self._paths: set[str] = set()
        self._dtypes: set[str] = set()

    # one pickle at a time, each from a bounded window of its member

    def _unpickler(self, data: bytes | io.BytesIO, pid: Any) -> RestrictedUnpickler:
        up = RestrictedUnpickler(data, pid, self.label)
        up._classes, up.globals, up.attribute_paths = self._classes, self._globals, self._paths
        up.numpy_dtypes = self._dtypes
        return up

    def _pickle(self, pos: int, end: int, what: str, limit: int = MAX_RECORD) -> tuple[Any, int]:
        """The pickle at ``pos`` (inside a member ending at ``end``) and where it ends.

        Read through a window that grows 16-fold while the pickle runs past it (a record
        is a few dozen bytes; the storages member around it can be gigabytes)."""
        window = 4096
        while True:
            n = min(end - pos, window, limit)
            self.f.seek(pos)
            buf = io.BytesIO(self.f.read(n))
            try:
                value = self._load(buf, what)
            except ReadError:
                if n >= min(end - pos, limit):
                    raise
                window *= 16
                continue
            return value, pos + buf.tell()

    def _load(self, buf: io.BytesIO, what: str) -> Any:
        """One pickle from ``buf``'s position; ``buf`` ends up just after it."""
        up = self._unpickler(buf, self._no_pid)
        try:
            value = up.run()
        except ReadError as err:
            raise ReadError(f"{self.label}: {what}: {_reason(err, self.label)}") from None
        self.problems.extend(up.problems)
        return value

    def _no_pid(self, pid: Any) -> Any:
        raise ReadError(f"{self.label}: unexpected persistent reference")

    def _read(self, pos: int, n: int, end: int, what: str) -> bytes:
        if pos + n > end:
            raise ReadError(f"{self.label}: {what} is cut off: the file is truncated or "
                            "damaged (copy or download it again)")
        self.f.seek(pos)
        return self.f.read(n)

    def _count(self, value: Any, what: str) -> int:
        if type(value) is not int or not 0 <= value <= MAX_ITEMS:
            raise ReadError(f"{self.label}: the {what} count {_short_repr(value)} is invalid "
                            f"(at most {MAX_ITEMS:,}); the file is damaged or hostile: "
                            "refusing to read it")
        return value

    def sys_info(self, m: _Member | None) -> bool:
        """Whether the raw numbers are little-endian (torch assumes so when unsaid)."""
        if m is None:
            return True
        info, _ = self._pickle(m.offset, m.offset + m.size, "the sys_info member")
        return not (isinstance(info, dict) and info.get("little_endian") is False)

    def storages(self, m: _Member, little: bool
                 ) -> tuple[dict[int, StorageRef], dict[int, StorageView]]:
        end = m.offset + m.size
        count, pos = self._pickle(m.offset, end, "the storages member")
        count = self._count(count, "storage")
        numel_of = struct.Struct("<q" if little else ">q")
        refs: dict[int, StorageRef] = {}
        dtype_names: dict[str, str] = {}
        for i in range(count):
            if pos >= end:
                raise ReadError(f"{self.label}: the storages member lists {count:,} storages "
                                f"but holds {i:,}; the file is truncated or damaged (copy or "
                                "download it again)")
            rec, pos = self._pickle(pos, end, f"storage record {i}")
            if not (type(rec) is tuple and len(rec) == 3):
                raise ReadError(f"{self.label}: storage record {i} is malformed "
                                f"({_short_repr(rec)}); the file is damaged (copy or "
                                "download it again)")
            key, location, stype = rec
            if type(key) is not int or type(location) is not str \
                    or type(stype) not in (StorageType, DType):
                what = getattr(stype, "qualname", None)
                raise ReadError(f"{self.label}: storage record {i} is malformed"
                                + (f" (unknown storage type {_safe(what)})" if what else "")
                                + "; the file is damaged or was not written by torch")
            (numel,) = numel_of.unpack(self._read(pos, 8, end, f"storage {key}"))
            dtype = dtype_names.setdefault(stype, str(stype))
            itemsize = dtypes.itemsize(dtype)
            if numel < 0 or pos + 8 + numel * itemsize > end:
                raise ReadError(f"{self.label}: storage {key} claims {numel:,} elements, more "
                                "than its member holds; the file is truncated or damaged "
                                "(copy or download it again)")
            if key in refs:
                raise ReadError(f"{self.label}: storage key {key} appears twice; the file is "
                                "damaged (copy or download it again)")
            if len(location) > 256 or not location.isprintable():
                self.problems.append(f"storage {key} names an odd location; torch cannot "
                                     "map it")
                location = _safe(location, 40)
            refs[key] = _new(StorageRef, (str(key), dtype, numel, location, self.shard))
            self.offsets[str(key)] = pos + 8
            pos += 8 + numel * itemsize
        views: dict[int, StorageView] = {}
        if pos < end:
            listed, _ = self._pickle(pos, end, "the storage view list",
                                     limit=MAX_PICKLE_BYTES)
            views = self._views(listed, refs)
        else:
            self.problems.append("the storage view list at the end of the storages member is "
                                 "missing; torch will fail to load this file")
        return refs, views

    def _views(self, listed: Any, refs: dict[int, StorageRef]) -> dict[int, StorageView]:
        if type(listed) is not list:
            self.problems.append("the storage view list is malformed; torch will fail")
            return {}
        views: dict[int, StorageView] = {}
        for item in listed[:MAX_ITEMS]:
            ok = type(item) is tuple and len(item) == 4 and all(type(v) is int for v in item)
            root = refs.get(item[1]) if ok else None
            if root is None or item[2] < 0 or item[3] < 0 or item[2] + item[3] > root.numel:
                self.problems.append(f"a storage view ({_short_repr(item)}) does not fit its "
                                     "storage; torch will fail to load this file")
                continue
            views[item[0]] = StorageView(root, item[2])
        return views

    def tensors(self, m: _Member, refs: dict[int, StorageRef], views: dict[int, StorageView],
                little: bool) -> dict[int, Any]:
        """The tensors member holds metadata only (~60 bytes a tensor): read it at once."""
        if m.size > MAX_TENSORS_MEMBER:
            raise ReadError(f"{self.label}: the tensors member claims {m.size:,} bytes of "
                            "metadata; the file is damaged or hostile: refusing to read it")
        self.f.seek(m.offset)
        raw = self.f.read(m.size)
        buf = io.BytesIO(raw)
        count = self._count(self._load(buf, "the tensors member"), "tensor")
        order = "<" if little else ">"
        head = struct.Struct(order + "i4x")
        out: dict[int, Any] = {}
        for i in range(count):
            if buf.tell() >= len(raw):
                raise ReadError(f"{self.label}: the tensors member lists {count:,} tensors "
                                f"but holds {i:,}; the file is truncated or damaged (copy or "
                                "download it again)")
            rec = self._load(buf, f"tensor record {i}")
            if not (type(rec) is tuple and len(rec) == 3 and type(rec[0]) is int):
                raise ReadError(f"{self.label}: tensor record {i} is malformed "
                                f"({_short_repr(rec)}); the file is damaged (copy or "
                                "download it again)")
            key, storage_key = rec[0], rec[1]
            pos = buf.tell()
            if pos + 8 > len(raw):
                raise ReadError(f"{self.label}: tensor {key} is cut off: the file is "
                                "truncated or damaged (copy or download it again)")
            (ndim,) = head.unpack_from(raw, pos)
            if not 0 <= ndim <= 64:
                raise ReadError(f"{self.label}: tensor {key} claims {ndim} dimensions; the "
                                "file is damaged (copy or download it again)")
            n = 16 * ndim + 8
            if pos + 8 + n > len(raw):
                raise ReadError(f"{self.label}: tensor {key} is cut off: the file is "
                                "truncated or damaged (copy or download it again)")
            nums = struct.unpack_from(f"{order}{2 * ndim + 1}q", raw, pos + 8)
            buf.seek(pos + 8 + n)
            storage = refs.get(storage_key) if type(storage_key) is int else None
            if storage is None:
                storage = views.get(storage_key) if type(storage_key) is int else None
            if storage is None:
                self.problems.append(f"tensor {key} names storage {_short_repr(storage_key)}, "
                                     "which the file does not hold; torch will fail to load it")
                out[key] = bad_tensor()
                continue
            sizes, strides, offset = nums[:ndim], nums[ndim:2 * ndim], nums[-1]
            if isinstance(storage, StorageView):
                offset, storage = offset + storage.offset, storage.ref
            out[key] = self.builder.tensor(storage, offset, sizes, strides)
        return out

    def objects(self, m: _Member, refs: dict[int, StorageRef], views: dict[int, StorageView],
                tensors: dict[int, Any]) -> Any:
        if m.size > MAX_PICKLE_BYTES:
            raise ReadError(f"{self.label}: the pickle member claims {m.size:,} bytes; "
                            "refusing to read it")
        label, problems = self.label, self.problems

        def persistent_load(pid: Any) -> Any:
            if type(pid) is tuple and pid:
                return pid[0]  # a module class with its source: ('module', file, source)
            key = pid if type(pid) is int else (
                int(pid) if type(pid) is str and 0 < len(pid) <= 20 and pid.isdigit() else None)
            if key is None:
                raise ReadError(f"{label}: the pickle references data pttui does not recognise "
                                f"({_short_repr(pid)}); it is not a torch.save file")
            found = tensors.get(key)
            if found is None:
                found = refs.get(key) or views.get(key)
            if found is None:
                problems.append(f"the pickle references tensor {key}, which the file does not "
                                "hold; torch will fail to load it")
                return bad_tensor()
            return found

        self.f.seek(m.offset)
        data = self.f.read(m.size)
        up = self._unpickler(data, persistent_load)
        up.root = up.run()  # type: ignore[attr-defined]
        self.problems.extend(up.problems)
        self.main = up
        return up.root


def _reason(err: ReadError, label: str) -> str:
    text = str(err)
    return text[len(label) + 2:] if text.startswith(f"{label}: ") else text


__all__ = ["FORMAT", "read_tar"]
