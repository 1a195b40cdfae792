"""A strict reader of a zip archive's central directory, made for torch's zip format.

We parse the directory ourselves instead of using ``zipfile`` because pttui must
know exactly which bytes torch would read (duplicate names, zip64 offsets,
compressed or encrypted records are all refused or reported), and because it
needs each record's absolute data offset to read tensors without unpickling.

torch finds records with miniz, which matches names ignoring ASCII case and,
when two names collide, returns whichever its binary search lands on (it depends
on where the records sit). So names are looked up case-folded here too, and any
two records whose folded names collide are listed in ``duplicates``.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections import namedtuple

from pttui.core.base.meta import ReadError

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import BinaryIO

_EOCD = b"PK\x05\x06"
_EOCD64_LOC = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
# A central directory header (46 bytes): signature, flags, method, CRC-32, compressed
# and uncompressed size, name/extra/comment lengths, local header offset; the fields
# pttui does not use (versions, time, date, disk, attributes) are skipped.
_CDH_FMT = struct.Struct("<4s4x2H4xL2L3H8xL")
_LFH_FMT = struct.Struct("<4s5H3L2H")  # 30 bytes
_MAX_COMMENT = 0xFFFF
_MAX_ENTRIES = 5_000_000
MAX_INFLATE = 512 << 20  # a compressed record we inflate into memory (data.pkl)


class ZipEntry(namedtuple("ZipEntry",
                          "name header_offset compressed_size size method flags crc")):
    """One central directory record: its name as stored, where its local header
    sits, its sizes, compression method, flags and CRC-32 (all ints but the name)."""

    __slots__ = ()


def fold(name: str) -> str:
    """miniz's name comparison key: ASCII letters lowered, every other byte kept."""
    if name.isascii():
        return name.lower()
    return name.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")


class Names(dict):
    """Records by case-folded name, looked up the way torch's miniz looks them up."""

    def get(self, name: str, default=None):  # type: ignore[override]
        return dict.get(self, fold(name), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, fold(name))

    def __getitem__(self, name: str) -> ZipEntry:
        return dict.__getitem__(self, fold(name))


class ZipIndex:
    """Names and locations of every record; ``data_offset`` reads one local header."""

    def __init__(self, f: BinaryIO, file_size: int, label: str, lean: bool = False) -> None:
        """``lean`` (reading metadata): the records of storages named by number under the
        archive's own ``data/`` folder are kept as sizes only, in ``data_sizes`` (8 bytes
        a record instead of ~250: 24 MB at 100,000 keys, held while unpickling)."""
        self._f = f
        self.file_size = file_size
        self.label = label
        self.entries: Names = Names()  # folded name -> entry (entry.name as stored)
        self.duplicates: list[str] = []
        self.data_sizes: array | None = None  # lean: size of data/N at [N], -1 if absent
        # (one slot more than records: the last stays -1)
        self.data_compressed = bytearray()  # lean: 1 at [N] if data/N is not stored as is
        self.lean = lean
        self._read_directory()

    # -- central directory -------------------------------------------------
    def _read_directory(self) -> None:
        f, size = self._f, self.file_size
        tail_len = min(size, 22 + _MAX_COMMENT)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        pos = tail.rfind(_EOCD)
        if pos < 0 or len(tail) - pos < 22:
            raise ReadError(f"{self.label}: the zip directory is missing (file truncated or not "
                            "fully written); re-copy or re-save the checkpoint")
        (_, _disk, _cd_disk, _n_disk, n_entries, cd_size, cd_offset,
         _clen) = struct.unpack_from("<4s4H2LH", tail, pos)
        eocd_abs = size - tail_len + pos
        if pos >= 20 and tail[pos - 20:pos - 16] == _EOCD64_LOC:
            (eocd64_off,) = struct.unpack_from("<Q", tail, pos - 12)
            if not 0 <= eocd64_off <= size - 56:
                raise ReadError(f"{self.label}: the zip64 directory pointer is out of range; "
                                "the file is damaged")
            f.seek(eocd64_off)
            rec = f.read(56)
            if rec[:4] != _EOCD64:
                raise ReadError(f"{self.label}: the zip64 directory record is damaged")
            n_entries, cd_size, cd_offset = struct.unpack_from("<QQQ", rec, 32)
            eocd_abs = eocd64_off
        if n_entries > _MAX_ENTRIES or cd_offset + cd_size > eocd_abs:
            raise ReadError(f"{self.label}: the zip directory points past the end of the file "
                            "(truncated download or interrupted save)")
        f.seek(cd_offset)
        cd = f.read(cd_size)
        if len(cd) != cd_size:
            raise ReadError(f"{self.label}: the zip directory is truncated")
        self._parse(cd, n_entries)

    def _parse(self, cd: bytes, n_entries: int) -> None:
        """One pass over the directory: the hot loop of opening a 100,000-key file, so
        entries are built with ``tuple.__new__`` (no Python-level ``__new__``) and a
        name that is already lower-case is its own folded key (one string, not two)."""
        unpack, off = _CDH_FMT.unpack_from, 0
        entries, add, new = self.entries, dict.setdefault, tuple.__new__  # first one kept
        data_b, sizes, packed = None, None, self.data_compressed
        try:
            for i in range(n_entries):
                sig, flags, method, crc, csize, usize, nlen, xlen, clen, lho = unpack(cd, off)
                if sig != _CDH:
                    raise ReadError(f"{self.label}: the zip directory is damaged (bad entry "
                                    "signature)")
                start = off + 46
                name_b = cd[start:start + nlen]
                if 0xFFFFFFFF in (csize, usize, lho):
                    usize, csize, lho = _zip64_extra(cd[start + nlen:start + nlen + xlen],
                                                     usize, csize, lho, self.label)
                elif csize == usize:
                    usize = csize  # stored records: one int object for both sizes
                off = start + nlen + xlen + clen
                if data_b is not None and name_b.startswith(data_b):
                    num = name_b[len(data_b):]
                    if num.isdigit() and (num[0] != 48 or len(num) == 1) and int(num) < slots:
                        k = int(num)
                        if sizes[k] >= 0:
                            self.duplicates.append(name_b.decode("utf-8", "surrogateescape"))
                        else:
                            sizes[k] = usize
                            if method:
                                packed[k] = 1
                        continue
                elif i == 0 and self.lean and b"/" in name_b:  # the archive's folder
                    data_b = name_b.split(b"/", 1)[0] + b"/data/"
                    slots = min(n_entries, len(cd) // 46)  # records there can be
                    self.data_sizes = sizes = array("q", (-1,)) * (slots + 1)
                    packed.extend(bytes(slots + 1))
                name = name_b.decode("utf-8", "surrogateescape")
                low = name_b.lower()
                key = name if low == name_b else low.decode("utf-8", "surrogateescape")
                entry = new(ZipEntry, (name, lho, csize, usize, method, flags, crc))
                if add(entries, key, entry) is not entry:
                    self.duplicates.append(name)
        except struct.error:  # a fixed header runs past the end
            raise ReadError(f"{self.label}: the zip directory is truncated") from None
        if off > len(cd):
            raise ReadError(f"{self.label}: the zip directory is truncated")
        if sizes is not None:
            self._cross_duplicates(fold(data_b.decode("utf-8", "surrogateescape")), sizes)

    def _cross_duplicates(self, folded_data: str, sizes: array) -> None:
        """A record kept by name (``ARCHIVE/data/5``) that folds to one kept by number."""
        for key, entry in dict.items(self.entries):
            if key.startswith(folded_data) and sizes[data_number(key[len(folded_data):],
                                                                 sizes)] >= 0:
                self.duplicates.append(entry.name)

    def data_record(self, folded_data: str, key: str) -> tuple[int, int] | None:
        """(size, method != 0) of the record of storage ``key`` under ``folded_data``
        (``archive/data/``, case-folded), or None where there is none."""
        sizes = self.data_sizes
        if sizes is not None:
            k = data_number(key, sizes)
            if sizes[k] >= 0:
                return sizes[k], self.data_compressed[k] != 0
        rec = dict.get(self.entries, folded_data + fold(key))
        return None if rec is None else (rec.size, rec.method != 0)

    # -- records -----------------------------------------------------------
    def data_offset(self, entry: ZipEntry) -> int:
        """Absolute offset of a record's bytes, after checking they are stored as is
        (pttui reads tensor bytes in place; torch.save never compresses them)."""
        if entry.method != 0:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} is compressed (method "
                            f"{entry.method}); pttui reads tensor bytes in place and needs "
                            "stored records. Re-save the file with torch.save")
        return self._start(entry, entry.size)

    def _start(self, entry: ZipEntry, stored: int) -> int:
        if entry.flags & 0x1:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} is encrypted; torch "
                            "cannot read it either")
        lfh = self._local_header(entry)
        nlen, xlen = struct.unpack_from("<2H", lfh, 26)
        start = entry.header_offset + 30 + nlen + xlen
        if start + stored > self.file_size:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} runs past the end of "
                            "the file (truncated)")
        return start

    def _local_header(self, entry: ZipEntry) -> bytes:
        self._f.seek(entry.header_offset)
        lfh = self._f.read(30)
        if len(lfh) < 30 or lfh[:4] != _LFH:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} has no valid local "
                            "header; the file is damaged")
        return lfh

    def local_disagreement(self, entry: ZipEntry) -> str | None:
        """How the record's local header contradicts the central directory, if it does.

        torch (like pttui) trusts the directory; a reader that walks local headers
        sees something else, which is how scanner-evading files are built.
        """
        lfh = self._local_header(entry)
        flags, _m, _t, _d, _crc, csize, usize, nlen = struct.unpack_from("<4H3LH", lfh, 6)
        local_name = self._f.read(nlen).decode("utf-8", "surrogateescape")
        if local_name != entry.name:
            return f"its local header names it {_safe(local_name)}"
        sizes_known = not flags & 0x8 and 0xFFFFFFFF not in (csize, usize)
        if sizes_known and (usize, csize) != (entry.size, entry.compressed_size):
            return (f"its local header says {usize:,} bytes, the directory "
                    f"{entry.size:,}")
        return None

    def read(self, entry: ZipEntry, limit: int | None = None) -> bytes:
        """A record's bytes; deflated records are inflated (torch's miniz does that too)."""
        n = entry.size if limit is None else min(limit, entry.size)
        if entry.method == 8:
            return self._inflate(entry, n)
        if entry.method != 0:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} is compressed with "
                            f"method {entry.method}; torch reads only stored or deflated "
                            "records, so it cannot load this file")
        start = self._start(entry, entry.size)
        self._f.seek(start)
        data = self._f.read(n)
        if len(data) != n:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} is truncated")
        return data

    def _inflate(self, entry: ZipEntry, n: int) -> bytes:
        if entry.size > MAX_INFLATE:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} is compressed and "
                            f"claims {entry.size:,} bytes (limit {MAX_INFLATE:,}); refusing "
                            "to inflate it")
        start = self._start(entry, entry.compressed_size)
        self._f.seek(start)
        raw = self._f.read(entry.compressed_size)
        try:
            data = zlib.decompressobj(-15).decompress(raw, n)
        except zlib.error as err:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} does not inflate "
                            f"({err}); the file is damaged") from None
        if len(data) != n:
            raise ReadError(f"{self.label}: record {_safe(entry.name)} inflates to fewer "
                            "bytes than the directory says; the file is damaged")
        return data


def storage_number(key: str) -> int:
    """A storage key as torch writes them, ``17`` -> 17; -1 for any other (``017``, ``١٧``)."""
    if key.isdigit() and key.isascii() and (key[0] != "0" or len(key) == 1):
        return int(key)
    return -1


def data_number(key: str, sizes: array) -> int:
    """The slot of ``data_sizes`` that storage ``key`` uses: its number when it fits,
    else -1, the last slot, which stays empty."""
    k = storage_number(key)
    return k if k < len(sizes) - 1 else -1


def _safe(name: str, limit: int = 120) -> str:
    """A record name fit for a one-line message (names are attacker-chosen)."""
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= limit else text[:limit] + "…"


def _zip64_extra(extra: bytes, usize: int, csize: int, lho: int,
                 label: str) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        hid, hlen = struct.unpack_from("<2H", extra, i)
        if hid == 0x0001:
            body, j = extra[i + 4:i + 4 + hlen], 0
            vals = []
            for cur in (usize, csize, lho):
                if cur == 0xFFFFFFFF:
                    if j + 8 > len(body):
                        break
                    vals.append(struct.unpack_from("<Q", body, j)[0])
                    j += 8
                else:
                    vals.append(cur)
            if len(vals) == 3:
                return vals[0], vals[1], vals[2]
            break
        i += 4 + hlen
    raise ReadError(f"{label}: zip64 sizes are missing from a record's extra field; the "
                    "file is damaged")
