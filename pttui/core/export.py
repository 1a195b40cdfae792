"""Write repaired weights to ``.pt`` or ``.safetensors``, atomically, then prove it.

When no tensor is cast, the stored bytes are copied as they are, without torch
(``rawexport``: as fast as ``cp`` plus the check, a few MiB of memory). Otherwise
tensors come from :class:`TensorSource` as zero-copy views of the mapped source,
so memory stays near one tensor (only casts allocate); mapped pages are handed
back to the page cache as the file streams through. The output is written to a
hidden temp file beside the destination, fsynced, verified by reading it back
with pttui's own reader (no pickle is run) and only then renamed into place: a
failed, cancelled or interrupted export leaves nothing behind, and the source
is never written over. A killed one leaves its hidden file, which the next export
into that folder removes (partials.py).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable

from pttui.core import dtypes, formats, partials, rawexport
from pttui.core.meta import Checkpoint, ReadError, TensorMeta
from pttui.core.tensordata import TensorSource, as_bytes, checksum, torch_dtype

TORCH, SAFETENSORS = "torch-zip", "safetensors"
EXTENSIONS = {".pt": TORCH, ".pth": TORCH, ".bin": TORCH, ".safetensors": SAFETENSORS}
_FMT_NAMES = {"pt": TORCH, "pth": TORCH, "bin": TORCH, "torch": TORCH, TORCH: TORCH,
              SAFETENSORS: SAFETENSORS}
_ST_TAGS = {v: k for k, v in dtypes.SAFETENSORS_DTYPES.items()}
_DROP_EVERY = 32 << 20  # bytes written between handing mapped pages back
COPY_BYTES = True  # copy stored bytes without torch when nothing is cast (rawexport.py)


class ExportCancelled(ReadError):
    """The caller's cancel event was set; nothing was written."""


@dataclass
class ExportResult:
    path: str
    format: str
    tensors: int
    nbytes: int
    seconds: float
    verified: bool
    problems: list[str] = field(default_factory=list)  # non-fatal notes
    aliases: dict[str, str] = field(default_factory=dict)  # dropped name -> kept name

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class _Job:
    """One export's state: what goes out, under which name, with which digest."""

    def __init__(self, mapping: dict[str, TensorMeta], source: dict[str, TensorMeta],
                 progress: Callable[[int, int], Any] | None, cancel: Any) -> None:
        self.items: list[tuple[str, TensorMeta, TensorMeta]] = []
        for name, meta in mapping.items():
            orig = source.get(meta.key)
            if orig is None:
                raise ReadError(f"{name}: its source tensor {meta.key} is not in the "
                                "checkpoint's selected container")
            if tuple(meta.shape) != tuple(orig.shape):
                raise ReadError(f"{name}: shape {list(meta.shape)} differs from the stored "
                                f"{list(orig.shape)}; pttui does not reshape tensors")
            self.items.append((name, meta, orig))
        self.progress, self.cancel = progress, cancel
        self.digests: dict[str, tuple[tuple[int, ...], str, str]] = {}
        self.problems: list[str] = []
        self.done = 0
        self._cast: dict[tuple, Any] = {}

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ExportCancelled("export cancelled; nothing was written")

    def tensor(self, src: TensorSource, name: str, meta: TensorMeta, orig: TensorMeta) -> Any:
        """Read (and cast) one tensor, record its digest, report progress. The caller
        drops the source pages once it has used the tensor."""
        self.check_cancel()
        t = src.read(orig)
        if meta.dtype != orig.dtype:
            vk = view_key(orig, meta.dtype)
            cast = self._cast.get(vk)
            if cast is None:
                try:
                    cast = t.to(torch_dtype(meta.dtype, name))
                except (RuntimeError, TypeError, NotImplementedError) as err:
                    raise ReadError(f"{name}: cannot cast {orig.dtype} to {meta.dtype} "
                                    f"({str(err).splitlines()[0][:120]})") from None
                self._cast[vk] = cast
            t = cast
        self.digests[name] = (tuple(t.shape), meta.dtype, checksum(t))
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.items))
        return t


def view_key(meta: TensorMeta, dtype: str | None = None) -> tuple:
    """Tensors with equal keys are the same bytes (tied weights): written once."""
    ident = meta.storage.ident if meta.storage is not None else ("<dcp>", meta.key)
    return (ident, meta.storage_offset, tuple(meta.shape),
            tuple(meta.stride) if meta.stride is not None else None, dtype or meta.dtype)


def export(ckpt: Checkpoint, mapping: dict[str, TensorMeta],
           source_tensors: dict[str, TensorMeta], out_path: str, *, fmt: str | None = None,
           force: bool = False, metadata: Any = None,
           progress: Callable[[int, int], Any] | None = None, cancel: Any = None,
           verify: bool = True) -> ExportResult:
    """Write ``mapping`` (output name -> source TensorMeta) to ``out_path``.

    ``source_tensors`` is the selected container as read (keyed by original key);
    a tensor whose ``mapping`` dtype differs from it is cast. ``metadata`` becomes
    the state_dict's ``_metadata`` (.pt) or string entries of ``__metadata__``
    (.safetensors). ``cancel`` is a ``threading.Event`` checked between tensors.
    """
    start = time.monotonic()
    out = os.path.abspath(out_path)
    _check_destination(ckpt, out, force)
    fmt = _resolve_format(out_path, fmt)
    job = _Job(mapping, source_tensors, progress, cancel)
    job.problems += partials.sweep_note(os.path.dirname(out))  # leftovers of killed runs
    plan = _st_plan(job, metadata) if fmt == SAFETENSORS else None
    aliases = plan[2] if plan else {}
    with TensorSource(ckpt) as src:
        raw = rawexport.plan(src, job.items, fmt, plan) if COPY_BYTES else None
        if raw is not None:  # bytes as stored: copied by the kernel, no torch
            write = partial(rawexport.write, p=raw, job=job, verify=verify,
                            metadata=_torch_metadata(job, metadata) if plan is None else None)
            check = (lambda tmp: _raise_if(rawexport.check(tmp, raw, job.items), fmt)
                     ) if verify else None
        else:
            write = (partial(_write_safetensors, src=src, job=job, plan=plan) if plan
                     else partial(_write_torch, src=src, job=job, metadata=metadata))
            check = (lambda tmp: _verify_or_raise(tmp, fmt, job.digests)) if verify else None
        _atomic_write(out, force, write, check)
    return ExportResult(out, fmt, len(job.items), os.path.getsize(out),
                        time.monotonic() - start, verify, job.problems, aliases)


def _resolve_format(out_path: str, fmt: str | None) -> str:
    if fmt is not None:
        got = _FMT_NAMES.get(fmt.lower().lstrip("."))
        if got is None:
            raise ReadError(f"unknown export format {fmt!r}; use pt or safetensors")
        return got
    ext = os.path.splitext(out_path)[1].lower()
    got = EXTENSIONS.get(ext)
    if got is None:
        raise ReadError(f"{out_path}: cannot tell the format from {ext or 'no extension'!r}; "
                        f"name it {', '.join(EXTENSIONS)} (.pt/.pth/.bin: torch.save, "
                        ".safetensors: safetensors)")
    return got


def source_files(ckpt: Checkpoint) -> list[str]:
    """Every file the checkpoint reads from: the ones an export must never replace."""
    paths = [ckpt.path]
    folder = os.path.dirname(os.path.abspath(ckpt.path))
    if ckpt.format == formats.SHARDED:
        paths += [os.path.join(folder, s) for s in ckpt.shards]
    elif ckpt.format == formats.DCP and os.path.isdir(ckpt.path):
        paths += [os.path.join(ckpt.path, n) for n in os.listdir(ckpt.path)]
    return paths


def _check_destination(ckpt: Checkpoint, out: str, force: bool) -> None:
    folder = os.path.dirname(out)
    if os.path.isdir(out):
        raise ReadError(f"{out}: is a folder; give a file name such as "
                        f"{os.path.join(out, 'model.safetensors')}")
    if not os.path.isdir(folder):
        raise ReadError(f"{out}: the folder {folder} does not exist; create it first")
    for src in source_files(ckpt):
        same = os.path.realpath(src) == os.path.realpath(out)
        if not same and os.path.exists(out) and os.path.exists(src):
            try:
                same = os.path.samefile(src, out)
            except OSError:
                pass
        if same:
            raise ReadError(f"{out}: is the source checkpoint ({src}); pttui never writes "
                            "over its input. Choose another output name")
    if os.path.lexists(out) and not force:
        raise ReadError(f"{out}: already exists; choose another name or pass --force to "
                        "replace it")
    if not os.access(folder, os.W_OK):
        raise ReadError(_DENIED.format(folder=folder))


_DENIED = "{folder}: permission denied; cannot write the export there"
_ERRNO_TEXT = {
    errno.ENOSPC: "{out}: the disk is full; free some space or write to another folder "
                  "(nothing was written)",
    getattr(errno, "EDQUOT", -1): "{out}: the disk quota is exceeded; free some space or "
                                  "write to another folder (nothing was written)",
    errno.EROFS: "{folder}: a read-only filesystem; write the export somewhere else",
    errno.EACCES: _DENIED, errno.EPERM: _DENIED,
}


def _os_error(err: OSError, out: str) -> ReadError:
    text = _ERRNO_TEXT.get(err.errno, "{out}: cannot write it ({why}); nothing was written")
    return ReadError(text.format(out=out, folder=os.path.dirname(out),
                                 why=err.strerror or err))


def _atomic_write(out: str, force: bool, write: Callable[[Any], None],
                  verify: Callable[[str], None] | None) -> None:
    """temp file -> write -> fsync -> verify -> rename (no-clobber unless force)."""
    folder, name = os.path.split(out)
    tmp = lock = None
    try:
        lock, tmp = partials.create(folder, name)  # locked until renamed or removed
        partials.make_ordinary(lock)
        with os.fdopen(os.dup(lock), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        try:
            partials.publish(tmp, out, replace=force)
        except FileExistsError:
            raise ReadError(f"{out}: appeared while exporting; not replacing it (pass "
                            "--force)") from None
        tmp = None
    except OSError as err:
        raise _os_error(err, out) from None
    finally:
        partials.discard(tmp, lock)  # tmp is None once published


# -- torch.save -------------------------------------------------------------------------

class _Sink:
    """The file torch.save writes through: checks cancel, hands mapped pages back,
    and keeps the real exception (torch turns it into a vague RuntimeError)."""

    def __init__(self, f: Any, src: TensorSource, job: _Job) -> None:
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


def _write_torch(f: Any, src: TensorSource, job: _Job, metadata: Any) -> None:
    import torch

    sd: OrderedDict[str, Any] = OrderedDict()
    for name, meta, orig in job.items:
        sd[name] = job.tensor(src, name, meta, orig)
        src.drop_pages(orig)  # the view stays valid; its pages fault back in when saved
    plain = _torch_metadata(job, metadata)
    if plain is not None:
        sd._metadata = plain  # type: ignore[attr-defined]
    sink = _Sink(f, src, job)
    try:
        torch.save(sd, sink)
    except BaseException:
        if sink.error is not None:
            raise sink.error from None
        raise
    src.drop_pages()
    job.check_cancel()


def _torch_metadata(job: _Job, metadata: Any) -> Any:
    """The ``_metadata`` a .pt export carries: plain values only, else left out (noted)."""
    if metadata is None:
        return None
    plain = _plain(metadata)
    if plain is None:
        job.problems.append("the state_dict _metadata holds objects other than plain "
                            "values; it was left out")
    return plain


def _plain(value: Any, depth: int = 0) -> Any:
    """A copy made of dict/list/str/int/float/bool/None only (what torch can reload with
    weights_only=True), or None when anything else is inside."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if depth < 20 and isinstance(value, dict) and all(type(k) is str for k in value):
        out = {k: _plain(v, depth + 1) for k, v in value.items()}
        ok = all(out[k] is not None or value[k] is None for k in value)
        return (OrderedDict(out) if depth == 0 else out) if ok else None
    if depth < 20 and type(value) in (list, tuple):
        items = [_plain(v, depth + 1) for v in value]
        ok = all(p is not None or v is None for p, v in zip(items, value))
        return type(value)(items) if ok else None
    return None


# -- safetensors ------------------------------------------------------------------------

def _st_plan(job: _Job, metadata: Any) -> tuple[bytes, list[tuple[str, TensorMeta, TensorMeta]],
                                                 dict[str, str]]:
    """Header bytes, the tensors in data order, and the aliases of tied tensors.

    Written by pttui rather than ``safetensors.save_file`` so tensors stream one at a
    time (progress, cancel, memory of one tensor); the layout is the documented one.
    """
    kept: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    unique: list[tuple[str, TensorMeta, TensorMeta]] = []
    storages: dict[Any, int] = {}
    for name, meta, orig in job.items:
        if meta.dtype not in _ST_TAGS:
            raise ReadError(f"{name}: dtype {meta.dtype} cannot be stored in .safetensors; "
                            "cast it or export to .pt")
        vk = view_key(orig, meta.dtype)
        if vk in kept:
            aliases[name] = kept[vk]
            continue
        kept[vk] = name
        unique.append((name, meta, orig))
        storages[vk[0]] = storages.get(vk[0], 0) + 1
    overlapping = sum(n for n in storages.values() if n > 1)
    if overlapping:
        job.problems.append(f"{overlapping} tensors are different views of shared memory; "
                            ".safetensors cannot share memory, so each is stored as a copy")
    st_meta: dict[str, str] = {"format": "pt"}
    if isinstance(metadata, dict) and all(type(k) is str and type(v) is str
                                          for k, v in metadata.items()):
        st_meta.update(metadata)
    elif metadata is not None:
        plain = _plain(metadata)
        if plain is not None:
            st_meta["pttui.state_metadata"] = json.dumps(plain, separators=(",", ":"))
    if aliases:
        st_meta["pttui.aliases"] = json.dumps(aliases, separators=(",", ":"))
    # largest elements first: every tensor then starts aligned to its element size
    order = sorted(unique, key=lambda item: -dtypes.itemsize(item[1].dtype))
    header: dict[str, Any] = {"__metadata__": st_meta}
    spans, pos = {}, 0
    for name, meta, _ in order:
        spans[name], pos = [pos, pos + meta.nbytes], pos + meta.nbytes
    for name, meta, _ in unique:
        header[name] = {"dtype": _ST_TAGS[meta.dtype], "shape": list(meta.shape),
                        "data_offsets": spans[name]}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, order, aliases


def _write_safetensors(f: Any, src: TensorSource, job: _Job, plan: tuple) -> None:
    head, order, _ = plan
    f.write(head)
    for name, meta, orig in order:
        t = job.tensor(src, name, meta, orig)
        data = as_bytes(t)
        if data.numel():
            f.write(data.numpy())
        del t, data
        src.drop_pages(orig)
    src.drop_pages()
    job.check_cancel()  # a cancel after the last tensor still means "don't keep it"


# -- verification -----------------------------------------------------------------------

def _verify_or_raise(path: str, fmt: str, expected: dict) -> None:
    """``expected`` holds every tensor written (tied names dropped from .safetensors
    were never written, so they are not in it)."""
    _raise_if(verify_file(path, expected), fmt)


def _raise_if(problems: list[str], fmt: str) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ReadError(f"verification of the written {fmt} file failed: {problems[0]}{more}; "
                        "nothing was written. Please report this")


def verify_file(path: str, expected: dict[str, tuple[tuple[int, ...], str, str]]
                ) -> list[str]:
    """Read ``path`` back (no pickle run) and compare name, shape, dtype, checksum."""
    from pttui.core.reader import open_checkpoint

    ckpt = open_checkpoint(path, () if expected else None)
    got = ckpt.tensors
    problems = [f"{k} is missing from the written file" for k in expected if k not in got]
    problems += [f"{k} was written but not asked for" for k in got if k not in expected]
    with TensorSource(ckpt) as src:
        for key, (shape, dtype, digest) in expected.items():
            meta = got.get(key)
            if meta is None:
                continue
            if tuple(meta.shape) != tuple(shape) or meta.dtype != dtype:
                problems.append(f"{key}: written as {meta.dtype}{list(meta.shape)}, expected "
                                f"{dtype}{list(shape)}")
                continue
            if checksum(src.read(meta)) != digest:
                problems.append(f"{key}: the written bytes differ from the source")
            src.drop(meta)
    return problems
