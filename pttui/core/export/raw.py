"""Export by copying stored bytes: no torch, no tensors in memory, seconds saved.

When no tensor is cast and every storage lies as is in a plain file (a torch zip or
legacy file, a safetensors file, a sharded set of them, little-endian), an export is
a byte copy. The kernel copies each storage (``os.copy_file_range``; a read/write
loop where that is unsupported) into a torch zip written by ``torchzip_write`` or
into a safetensors file; then every copied byte is compared with its source (the
pass that also yields the zip's CRC-32s), and after the fsync the written file is
read back by pttui's reader to check names, shapes, dtypes, views and where each
record lies. Memory stays at two small buffers whatever the file size. Anything
else returns None from ``plan`` and goes through torch as before.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from pttui.core.read import formats
from pttui.core.export import torchzip_write as tz
from pttui.core.base.dtypes import itemsize
from pttui.core.base.meta import ReadError, TensorMeta
from pttui.core.read.tensordata import TensorSource

_CHUNK = 8 << 20  # bytes compared at a time
_COPY = 64 << 20  # bytes per copy call (cancel is checked between them)
_KINDS = ("tensor", "parameter")


@dataclass
class Copy:
    """``size`` bytes from ``src_path`` at ``src_offset`` to the output at ``dst_offset``."""

    src_path: str
    src_offset: int
    size: int
    dst_offset: int = 0
    record: Any = None  # the zip record it fills (.pt)
    crc: int | None = None  # the source record's CRC-32, when the copy is that whole record


@dataclass
class Plan:
    fmt: str
    copies: list[Copy] = field(default_factory=list)
    tensors: list[tz.TensorRef] = field(default_factory=list)  # .pt: the pickle's view
    per_copy: list[int] = field(default_factory=list)  # tensors finished by each copy
    header: bytes = b""  # .safetensors


def _contiguous(meta: TensorMeta) -> bool:
    """torch's rule: strides of size-1 dimensions do not matter."""
    if meta.stride is None:
        return True
    expected = 1
    for d, s in zip(reversed(meta.shape), reversed(meta.stride)):
        if d != 1 and s != expected:
            return False
        expected *= d
    return True


def _raw_ok(src: TensorSource, meta: TensorMeta, orig: TensorMeta) -> bool:
    ref = orig.storage
    return (meta.dtype == orig.dtype and orig.kind in _KINDS and ref is not None
            and ref.dtype == orig.dtype and ref.shard not in src.big_endian
            and orig.dtype in tz.STORAGE_CLASS)


def plan(src: TensorSource, items: list[tuple[str, TensorMeta, TensorMeta]], fmt: str,
         st_plan: tuple | None = None) -> Plan | None:
    """How to write ``items`` by copying bytes, or None when torch is needed."""
    if src.ckpt.format == formats.DCP:
        return None
    if not all(_raw_ok(src, meta, orig) for _, meta, orig in items):
        return None
    try:
        if fmt == "safetensors":
            return _plan_safetensors(src, st_plan)
        return _plan_torch(src, items)
    except ReadError:
        return None  # the torch path reports the same problem in its own words


def _plan_torch(src: TensorSource, items) -> Plan:
    """One record per source storage (whole, as torch.save writes a view's storage)."""
    out = Plan("torch-zip")
    records: dict[tuple, str] = {}
    counts: list[int] = []
    for name, meta, orig in items:
        ref = orig.storage
        rec = records.get(ref.ident)
        if rec is None:
            rec = records[ref.ident] = str(len(records))
            path, start = src.span(ref, orig.key)
            out.copies.append(Copy(path, start, ref.nbytes, crc=src.record_crc(ref)))
            counts.append(0)
        counts[int(rec)] += 1
        stride = tuple(orig.stride) if orig.stride is not None else tz.contiguous_stride(
            orig.shape)
        out.tensors.append(tz.TensorRef(name, rec, orig.dtype, ref.numel, orig.storage_offset,
                                        tuple(orig.shape), stride))
    out.per_copy = counts
    return out


def _plan_safetensors(src: TensorSource, st_plan: tuple) -> Plan | None:
    head, order, _aliases = st_plan
    out = Plan("safetensors", header=head)
    pos = len(head)
    for _name, meta, orig in order:
        if not _contiguous(orig):
            return None
        path, start = src.span(orig.storage, orig.key)
        out.copies.append(Copy(path, start + orig.storage_offset * itemsize(orig.dtype),
                               meta.nbytes, pos))
        pos += meta.nbytes
    out.per_copy = [1] * len(out.copies)
    return out


# -- writing ------------------------------------------------------------------------------

class _Files:
    """Source file descriptors, opened once."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}

    def fd(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            try:
                fd = self.fds[path] = os.open(path, os.O_RDONLY)
            except OSError as err:
                raise ReadError(f"{path}: cannot open it ({err.strerror or err})") from None
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


# copy_file_range cannot serve these (old kernels, other filesystems, special files):
# copy through memory instead. Any other error (ENOSPC, EIO) is the export's failure.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM,
                   getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _copy(src_fd: int, dst_fd: int, c: Copy, job: Any, kernel: list[bool]) -> None:
    done = 0
    while done < c.size:
        job.check_cancel()
        want = min(_COPY, c.size - done)
        n = 0
        if kernel[0]:
            try:
                n = os.copy_file_range(src_fd, dst_fd, want, c.src_offset + done,
                                       c.dst_offset + done)
            except OSError as err:
                if err.errno not in _NO_KERNEL_COPY:
                    raise
                kernel[0] = False
        if n == 0:
            data = os.pread(src_fd, min(want, _CHUNK), c.src_offset + done)
            if not data:
                raise ReadError(f"{c.src_path}: ended early while copying (truncated?)")
            n = os.pwrite(dst_fd, data, c.dst_offset + done)
        done += n


def write(f: Any, p: Plan, job: Any, metadata: Any, verify: bool) -> None:
    """Write the whole file into ``f`` (the export's temp file). Each copy is read back
    by a second thread while the next is copied, so checking costs little wall time."""
    f.flush()
    fd = f.fileno()
    files = _Files()
    writer = None
    checker = _Checker(fd, job, verify, crc=p.fmt != "safetensors")
    try:
        if p.fmt == "safetensors":
            os.pwrite(fd, p.header, 0)
        else:
            writer = tz.ZipWriter(fd)
            tz.head_records(writer, tz.state_dict_pickle(p.tensors, metadata))
        checker.start()
        flusher = _Flusher(fd) if FLUSH_EARLY else None
        done, total, kernel = 0, len(job.items), [hasattr(os, "copy_file_range")]
        for i, (c, n) in enumerate(zip(p.copies, p.per_copy)):
            if writer is not None:  # each header just before its bytes: the file grows in
                c.record = writer.begin(f"data/{i}", c.size, c.crc or 0)  # order (all the
                c.dst_offset = c.record.data_offset  # headers first made a sparse file whose
            src_fd = files.fd(c.src_path)  # holes the copies then filled: 20% slower)
            _copy(src_fd, fd, c, job, kernel)
            checker.queue.put((c, src_fd))
            for _ in range(n):  # one call per tensor, as the torch path makes
                done += 1
                if job.progress is not None:
                    job.progress(done, total)
        if flusher is not None:
            flusher.finish()
        problems = checker.finish()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ReadError(f"verification of the written {p.fmt} file failed: {problems[0]}"
                            f"{more}; nothing was written. Please report this")
        if writer is not None:
            for c in p.copies:
                if c.crc is None:  # computed while checking; the header has a 0
                    writer.set_crc(c.record, c.record.crc)
            tz.tail_records(writer)
            writer.finish()
        else:
            os.ftruncate(fd, len(p.header) + sum(c.size for c in p.copies))
        job.check_cancel()
    finally:
        checker.abandon()
        files.close()


FLUSH_EARLY = True


class _Flusher(threading.Thread):
    """Starts writing the copied pages to disk while copying goes on, so the final
    fsync finds little left to do (the copy, the check and the disk work at once).

    Linux: ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` every 50 ms starts the write-back
    without waiting for it or committing the journal (an fdatasync each time did both:
    the 2.5 GB export took 1.65 s, now 1.46-1.50 s, medians of 7 interleaved rounds);
    elsewhere, fdatasync."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="pttui-export-flush", daemon=True)
        self.fd, self.done = fd, threading.Event()
        self.start()

    def run(self) -> None:
        start_writeback = _sync_file_range()
        while not self.done.wait(0.05):
            if start_writeback is not None and start_writeback(self.fd, 0, 0, 2) == 0:
                continue  # 2: SYNC_FILE_RANGE_WRITE, the whole file
            start_writeback = None  # unsupported here: wait for the write-back instead
            try:
                os.fdatasync(self.fd)
            except OSError:
                return  # the final fsync reports any error

    def finish(self) -> None:
        self.done.set()
        self.join()


def _sync_file_range() -> Any:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux, or no C library to ask
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


class _Checker(threading.Thread):
    """Reads back each copy once it is written: compares it with the source (verify)
    and takes its CRC-32 (zip records). Runs beside the copying, on the other core."""

    def __init__(self, fd: int, job: Any, verify: bool, crc: bool) -> None:
        super().__init__(name="pttui-export-check", daemon=True)
        self.fd, self.job, self.verify, self.crc = fd, job, verify, crc
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.problems: list[str] = []
        self.error: BaseException | None = None
        self.stopped = False

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None or self.stopped:
                    return
                if not self.problems:
                    problem = _compare_one(self.fd, *item, self)
                    if problem:
                        self.problems.append(problem)
        except BaseException as err:  # noqa: BLE001 - handed to the writing thread
            self.error = err

    def finish(self) -> list[str]:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error
        return self.problems

    def abandon(self) -> None:
        """Stop early (the export failed or was cancelled) before the files close."""
        if self.is_alive():
            self.stopped = True
            self.queue.put(None)
            self.join()


def _compare_one(fd: int, c: Copy, src_fd: int, checker: _Checker) -> str | None:
    """Compare (verify) and checksum (zip records) one copy; a copy of a whole source
    record keeps that record's CRC-32, verified byte for byte instead of recomputed (the
    CRC was most of this thread's time: 1.0 of 2.2 s for 2.5 GB)."""
    crc = checker.crc and c.crc is None
    if not (checker.verify or crc):
        if c.record is not None:
            c.record.crc = c.crc
        return None
    value, done = 0, 0
    while done < c.size:
        if checker.stopped:
            return None
        checker.job.check_cancel()
        n = min(_CHUNK, c.size - done)
        # fresh bytes objects: == on them is one memcmp (memoryview slices compare
        # element by element, twenty times slower)
        got = os.pread(fd, n, c.dst_offset + done)
        if len(got) != n:
            return f"the written file is short at offset {c.dst_offset + done:,}"
        if checker.verify and got != os.pread(src_fd, n, c.src_offset + done):
            return (f"bytes at offset {c.dst_offset + done:,} differ from {c.src_path} at "
                    f"{c.src_offset + done:,}")
        if crc:
            value = zlib.crc32(got, value)
        done += n
    if c.record is not None:
        c.record.crc = value if crc else c.crc
    return None


# -- after the fsync: read the file back ------------------------------------------------

def check(path: str, p: Plan, items: list[tuple[str, TensorMeta, TensorMeta]]) -> list[str]:
    """What pttui's reader sees in ``path`` must be what was planned, to the byte offset."""
    from pttui.core.read.reader import open_checkpoint

    ckpt = open_checkpoint(path, () if items else None)  # an empty file has no container
    got = ckpt.tensors
    problems = [n[len("problem: "):] for n in ckpt.notes if n.startswith("problem: ")]
    if p.fmt == "safetensors":
        return problems + _check_safetensors(path, p, got)
    want = {t.name: t for t in p.tensors}
    problems += [f"{k} is missing from the written file" for k in want if k not in got]
    problems += [f"{k} was written but not asked for" for k in got if k not in want]
    offsets = {c.record.name.rsplit("/", 1)[1]: c for c in p.copies}
    with TensorSource(ckpt) as src:
        for name, t in want.items():
            m = got.get(name)
            if m is None:
                continue
            if (tuple(m.shape), m.dtype, m.storage_offset) != (t.shape, t.dtype, t.offset) \
                    or tuple(m.stride or tz.contiguous_stride(m.shape)) != t.stride \
                    or m.storage is None or m.storage.key != t.record:
                problems.append(f"{name}: written as {m.dtype}{list(m.shape)}, expected "
                                f"{t.dtype}{list(t.shape)}")
                continue
            c = offsets[t.record]
            if src.span(m.storage, name) != (ckpt.path, c.dst_offset) or \
                    m.storage.nbytes != c.size:
                problems.append(f"{name}: its record is not where its bytes were written")
    return problems


def _check_safetensors(path: str, p: Plan, got: dict[str, TensorMeta]) -> list[str]:
    from pttui.core.read.stfile import read_header

    with open(path, "rb") as f:
        header, start = read_header(f, os.path.getsize(path), path)
    planned = json.loads(p.header[8:])
    if start != len(p.header) or header != planned:
        return ["the header read back differs from the header written"]
    names = [k for k in planned if k != "__metadata__"]
    missing = [k for k in names if k not in got]
    return [f"{k} is missing from the written file" for k in missing]
