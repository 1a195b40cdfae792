"""Write repaired weights to ``.pt`` or ``.safetensors``, atomically, then prove it.

When no tensor is cast, the stored bytes are copied as they are, without torch
(``rawexport``: as fast as ``cp`` plus the check, a few MiB of memory). Otherwise
tensors come from :class:`TensorSource` as zero-copy views of the mapped source and
go out one at a time (``streamexport`` for .pt, ``_write_safetensors`` here), so
memory stays near the largest tensor: a cast allocates one tensor, written and
freed before the next. The output is written to a hidden temp file beside the
destination, fsynced, verified by reading it back with pttui's own reader (no
pickle is run) and only then renamed into place: a failed, cancelled or
interrupted export leaves nothing behind, and the source is never written over. A
killed one leaves its hidden file, which the next export into that folder removes
(partials.py).
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

from pttui.core.base import dtypes, partials
from pttui.core.read import formats, modversions, stfile
from pttui.core.export import raw as rawexport, stream as streamexport
from pttui.core.export.job import ExportCancelled, Job as _Job, view_key
from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta
from pttui.core.read.tensordata import TensorSource, as_bytes, checksum

__all__ = ["EXTENSIONS", "ExportCancelled", "ExportResult", "SAFETENSORS", "TORCH",
           "OutputExists", "exists_message", "export", "source_files", "verify_file", "view_key"]
TORCH, SAFETENSORS = "torch-zip", "safetensors"
EXTENSIONS = {".pt": TORCH, ".pth": TORCH, ".bin": TORCH, ".safetensors": SAFETENSORS}
_FMT_NAMES = {"pt": TORCH, "pth": TORCH, "bin": TORCH, "torch": TORCH, TORCH: TORCH,
              SAFETENSORS: SAFETENSORS}
_ST_TAGS = {v: k for k, v in dtypes.SAFETENSORS_DTYPES.items()}
COPY_BYTES = True  # copy stored bytes without torch when nothing is cast (rawexport.py)


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
    cast: dict[str, int] = field(default_factory=dict)  # dtype -> tensors cast to it
    derived: int = 0  # tensors computed by the recipe's value ops (transpose, concat, ...)

    @property
    def verdict(self) -> str:
        """One line saying what the read-back proved (casts are not 'equal the source')."""
        if not self.verified:
            return "not verified"
        what = "(keys, shapes, dtypes, checksums)"
        if self.derived:
            return (f"verified: every tensor read back equals the source with the recipe "
                    f"applied ({self.derived} computed by its value ops) {what}")
        if not self.cast:
            return f"verified: every tensor read back equals the source {what}"
        into = " / ".join(sorted(self.cast))
        cast = sum(self.cast.values())
        if cast == self.tensors:
            return f"verified: every tensor read back equals the source cast to {into} {what}"
        kept = self.tensors - cast

        def count(n: int, what: str) -> str:
            return f"{n} {what} tensor equals" if n == 1 else f"{n} {what} tensors equal"

        return (f"verified by reading back: {count(kept, 'kept')} the source, "
                f"{count(cast, 'cast')} the source cast to {into} {what}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "verdict": self.verdict}


def export(ckpt: Checkpoint, mapping: dict[str, TensorMeta],
           source_tensors: dict[str, TensorMeta], out_path: str, *, fmt: str | None = None,
           force: bool = False, metadata: Any = None,
           progress: Callable[[int, int], Any] | None = None, cancel: Any = None,
           verify: bool = True) -> ExportResult:
    """Write ``mapping`` (output name -> source TensorMeta) to ``out_path``.

    ``source_tensors`` is the selected container as read (keyed by original key);
    a tensor whose ``mapping`` dtype differs from it is cast. ``metadata`` becomes
    the state_dict's ``_metadata`` (.pt) or string entries of ``__metadata__``
    (.safetensors); None with a whole pickled model (``torch.save(model)``): its
    modules' versions, read from the pickle without running it and renamed with the
    keys (modversions.py). ``cancel`` is a ``threading.Event`` checked between tensors.
    """
    start = time.monotonic()
    out = os.path.abspath(out_path)
    _check_destination(ckpt, out, force)
    fmt = _resolve_format(out_path, fmt)
    job = _Job(mapping, source_tensors, progress, cancel)
    job.problems += partials.sweep_note(os.path.dirname(out))  # leftovers of killed runs
    if metadata is None and job.items:  # torch.save(model): its modules' versions
        found = modversions.read_module_metadata(ckpt)
        metadata = modversions.renamed(found, job.items) if found else None
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
                     else partial(_write_torch, src=src, job=job,
                                  metadata=_torch_metadata(job, metadata)))
            check = (lambda tmp: _verify_or_raise(tmp, fmt, job.digests)) if verify else None
        _atomic_write(out, force, write, check)
    return ExportResult(out, fmt, len(job.items), os.path.getsize(out),
                        time.monotonic() - start, verify, job.problems, aliases, job.cast,
                        job.derived)


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
        raise OutputExists(out)
    if not os.access(folder, os.W_OK):
        raise ReadError(_DENIED.format(folder=folder))


class OutputExists(ReadError):
    """Refusing to replace ``path``. The message names the command line's switch; the
    TUI says its own words (its checkbox) from ``path``."""

    def __init__(self, path: str, what: str = "already exists") -> None:
        super().__init__(exists_message(path, what))
        self.path, self.what = path, what


def exists_message(path: str, what: str = "already exists") -> str:
    return (f"{path}: {what}; not replacing it. Choose another name, or pass --force to "
            "replace it")


_DENIED = "{folder}: permission denied; cannot write the export there"
_ERRNO_TEXT = {
    errno.ENOSPC: "{out}: the disk is full; free some space or write to another folder "
                  "(nothing was written)",
    getattr(errno, "EDQUOT", -1): "{out}: the disk quota is exceeded; free some space or "
                                  "write to another folder (nothing was written)",
    errno.EROFS: "{folder}: a read-only filesystem; write the export somewhere else",
    errno.EACCES: _DENIED, errno.EPERM: _DENIED,
}


def os_error(err: OSError, out: str) -> ReadError:
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
            raise OutputExists(out, "appeared while exporting") from None
        tmp = None
    except OSError as err:
        raise os_error(err, out) from None
    finally:
        partials.discard(tmp, lock)  # tmp is None once published


# -- torch.save format ------------------------------------------------------------------

def _write_torch(f: Any, src: TensorSource, job: _Job, metadata: Any) -> None:
    """One storage at a time (streamexport); torch.save for dtypes it cannot name."""
    p = streamexport.plan(src, job.items, view_key)
    if p is not None:
        streamexport.write(f, p, src, job, metadata)
    else:
        streamexport.write_torch_save(f, src, job, metadata, view_key)


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
        if vk[0] != "derived":  # a computed tensor is a new one, sharing nothing
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
    from pttui.core.read.reader import open_checkpoint

    ckpt = open_checkpoint(path, () if expected else None)
    got = ckpt.tensors
    problems = [f"{k} is missing from the written file" for k in expected if k not in got]
    restored = stfile.aliases_of(ckpt.metadata) or {}  # tied names read back as aliases
    problems += [f"{k} was written but not asked for" for k in got
                 if k not in expected and k not in restored]
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
