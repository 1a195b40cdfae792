"""Write a ``.pt`` state_dict one storage at a time, through torch tensors.

Used when the stored bytes cannot simply be copied (``rawexport``): a tensor is
cast, the source is a DCP folder, a big-endian or unaligned (legacy) file. The
pickle ``torch.save`` would write is known before any tensor is read (names,
dtypes, shapes, views), so the zip is written by ``torchzip_write`` record by
record: produce one storage (a mapped view, or a cast), write it, take its CRC,
release it, go on. Memory stays near the largest tensor, whatever the file size
(``torch.save`` needs every storage alive at once, casts included).

What stays shared: an uncast tensor is written as a view of its whole source
storage, as ``torch.save`` does, so views and tied weights stay tied; cast tensors
that are the same view of the same bytes (tied weights) share one cast record.
Dtypes without a classic storage class (float8, uint16, ...) return None from
``plan``; ``torch.save`` then writes the file.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from pttui.core.read import formats
from pttui.core.export import torchzip_write as tz
from pttui.core.base.meta import ReadError, TensorMeta
from pttui.core.read.tensordata import TensorSource, as_bytes

_CHUNK = 16 << 20  # bytes handed to one pwrite / crc32 call
_KINDS = ("tensor", "parameter")


class Record:
    """One storage of the output: the source storage whole, or one (cast) tensor."""

    __slots__ = ("name", "size", "whole", "users")

    def __init__(self, name: str, size: int, whole: bool) -> None:
        self.name, self.size, self.whole = name, size, whole
        self.users: list[tuple[str, TensorMeta, TensorMeta]] = []


class Plan:
    __slots__ = ("records", "tensors")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.tensors: list[tz.TensorRef] = []  # the pickle's view of them, in item order


def plan(src: TensorSource, items: list[tuple[str, TensorMeta, TensorMeta]],
         view_key: Any) -> Plan | None:
    """The records and the pickle of ``items``; None when a dtype has no storage class."""
    out, records = Plan(), {}
    dcp = src.ckpt.format == formats.DCP
    for name, meta, orig in items:
        if meta.dtype not in tz.STORAGE_CLASS:
            return None
        ref = orig.storage
        shape = tuple(meta.shape)
        if (meta.dtype == orig.dtype and not dcp and ref is not None
                and ref.dtype == orig.dtype and orig.kind in _KINDS):
            key: tuple = ("storage", ref.ident)
            rec = records.get(key)
            if rec is None:
                rec = records[key] = Record(str(len(records)), ref.nbytes, True)
                out.records.append(rec)
            stride = tuple(orig.stride) if orig.stride is not None else tz.contiguous_stride(
                shape)
            out.tensors.append(tz.TensorRef(name, rec.name, orig.dtype, ref.numel,
                                            orig.storage_offset, shape, stride))
        else:
            key = ("view", view_key(orig, meta.dtype))
            rec = records.get(key)
            if rec is None:
                rec = records[key] = Record(str(len(records)), meta.nbytes, False)
                out.records.append(rec)
            out.tensors.append(tz.TensorRef(name, rec.name, meta.dtype, meta.numel, 0, shape,
                                            tz.contiguous_stride(shape)))
        rec.users.append((name, meta, orig))
    return out


def write(f: Any, p: Plan, src: TensorSource, job: Any, metadata: Any) -> None:
    """Write the whole file into ``f`` (the export's temp file); ``job`` is export's _Job:
    it reads and casts each tensor, records its digest and reports progress."""
    f.flush()
    fd = f.fileno()
    w = tz.ZipWriter(fd)
    tz.head_records(w, tz.state_dict_pickle(p.tensors, metadata))
    for rec in p.records:
        job.check_cancel()
        first, meta, orig = rec.users[0]
        t = job.tensor(src, first, meta, orig)  # read (and cast), digest, progress
        data = src.storage_bytes(orig) if rec.whole else as_bytes(t)
        if data.numel() != rec.size:
            raise ReadError(f"{first}: {data.numel():,} bytes to write, {rec.size:,} planned; "
                            "please report this")
        zr = w.begin(f"data/{rec.name}", rec.size)
        w.set_crc(zr, write_at(fd, zr.data_offset, data, job))
        del t, data
        for name, meta, orig in rec.users[1:]:
            if rec.whole:
                job.tensor(src, name, meta, orig)  # another view of the same bytes
            else:
                job.same(name, first)  # the same cast of the same bytes: tied
        src.drop(orig)  # forget the storage (a swapped or realigned copy) and its pages
    tz.tail_records(w)
    w.finish()
    job.check_cancel()  # a cancel after the last tensor still means "don't keep it"


def write_at(fd: int, offset: int, data: Any, job: Any) -> int:
    """Write ``data`` (a contiguous uint8 tensor) at ``offset``; its CRC-32."""
    crc = 0
    if not data.numel():
        return crc
    view = memoryview(data.numpy())
    for start in range(0, len(view), _CHUNK):
        job.check_cancel()
        chunk = view[start:start + _CHUNK]
        crc = zlib.crc32(chunk, crc)
        done = 0
        while done < len(chunk):
            done += os.pwrite(fd, chunk[done:], offset + start + done)
    return crc


# -- torch.save, for what torchzip_write cannot name --------------------------------------

_DROP_EVERY = 32 << 20  # bytes written between handing mapped pages back


class _Sink:
    """The file torch.save writes through: checks cancel, hands mapped pages back,
    and keeps the real exception (torch turns it into a vague RuntimeError)."""

    def __init__(self, f: Any, src: TensorSource, job: Any) -> None:
        self.f, self.src, self.job = f, src, job
        self.error: BaseException | None = None
        self.since = 0

    def write(self, data: Any) -> int:
        if self.error is not None:
            raise self.error
        try:
            self.job.check_cancel()
            n = self.f.write(data)
        except BaseException as err:
            self.error = err
            raise
        self.since += len(data)
        if self.since >= _DROP_EVERY:
            self.src.drop_pages()
            self.since = 0
        return n

    def flush(self) -> None:
        self.f.flush()


def write_torch_save(f: Any, src: TensorSource, job: Any, metadata: Any,
                     view_key: Any) -> None:
    """``torch.save`` of the whole state_dict. It needs every tensor alive at once:
    mapped views cost page cache, but casts and DCP reads cost memory, so this is
    only for dtypes ``plan`` refuses (float8, uint16, ...). Tied casts are cast once."""
    from collections import OrderedDict

    import torch

    sd: OrderedDict[str, Any] = OrderedDict()
    casts: dict[tuple, str] = {}
    for name, meta, orig in job.items:
        if meta.dtype != orig.dtype:
            first = casts.setdefault(view_key(orig, meta.dtype), name)
            if first != name:
                sd[name] = sd[first]
                job.same(name, first)
                continue
        sd[name] = job.tensor(src, name, meta, orig, keep=True)
        src.drop_pages(orig)  # the view stays valid; its pages fault back in when saved
    if metadata is not None:
        sd._metadata = metadata  # type: ignore[attr-defined]
    sink = _Sink(f, src, job)
    try:
        torch.save(sd, sink)
    except BaseException:
        if sink.error is not None:
            raise sink.error from None
        raise
    src.drop_pages()
    job.check_cancel()

