"""One export's state: what goes out under which name, each tensor read (and cast) in
turn, its digest for the read-back check, progress and cancel.

Nothing is kept between tensors: a cast goes into one buffer the size of the largest
cast, reused by the next, so an export's memory is one tensor whatever the file size.
"""

from __future__ import annotations

from typing import Any, Callable

from pttui.core.base.meta import Derived, ReadError, TensorMeta
from pttui.core.read.tensordata import TensorSource, checksum, torch_dtype


class ExportCancelled(ReadError):
    """The caller's cancel event was set; nothing was written."""


class Job:
    """One export's state: what goes out, under which name, with which digest."""

    def __init__(self, mapping: dict[str, TensorMeta], source: dict[str, TensorMeta],
                 progress: Callable[[int, int], Any] | None, cancel: Any) -> None:
        self.items: list[tuple[str, TensorMeta, TensorMeta]] = []
        self.source = source
        self.derived = 0  # tensors a value op computes (their ``orig`` is the Derived)
        for name, meta in mapping.items():
            if isinstance(meta, Derived):
                for leaf in meta.derive.leaves():
                    self._orig(name, leaf)
                self.items.append((name, meta, meta))
                self.derived += 1
                continue
            orig = self._orig(name, meta)
            if tuple(meta.shape) != tuple(orig.shape):
                raise ReadError(f"{name}: shape {list(meta.shape)} differs from the stored "
                                f"{list(orig.shape)}, and no recipe op says how to get it")
            self.items.append((name, meta, orig))
        self.progress, self.cancel = progress, cancel
        self.digests: dict[str, tuple[tuple[int, ...], str, str]] = {}
        self.problems: list[str] = []
        self.done = 0
        self.cast: dict[str, int] = {}
        for _name, meta, orig in self.items:
            if meta.dtype != orig.dtype and meta is not orig:
                self.cast[meta.dtype] = self.cast.get(meta.dtype, 0) + 1
        self._buf: Any = None  # every cast goes into it, so memory is one cast, not many
        self._dbuf: Any = None  # and every computed tensor into this one

    def _orig(self, name: str, meta: TensorMeta) -> TensorMeta:
        orig = self.source.get(meta.key)
        if orig is None:
            raise ReadError(f"{name}: its source tensor {meta.key} is not in the "
                            "checkpoint's selected container")
        return orig

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ExportCancelled("export cancelled; nothing was written")

    def tensor(self, src: TensorSource, name: str, meta: TensorMeta, orig: TensorMeta,
               keep: bool = False) -> Any:
        """Read (and cast) one tensor, record its digest, report progress. The caller
        drops the source pages once it has used the tensor.

        A cast is written into one buffer the size of the largest cast, reused by the
        next call (fresh allocations, freed one by one, still leave the C heap holding
        many of them); ``keep`` gives a tensor of its own instead. Tied names: ``same``.
        """
        self.check_cancel()
        if isinstance(meta, Derived):  # computed by the recipe's value ops: a new tensor
            from pttui.core.recipe.values import compute

            out = None if keep else self._into(meta)
            t = compute(meta, lambda leaf: self._leaf(src, leaf), out)
            self._done(name, (tuple(t.shape), meta.dtype, checksum(t)))
            return t
        t = src.read(orig)
        if meta.dtype != orig.dtype:
            try:
                t = t.to(torch_dtype(meta.dtype, name)) if keep else self._cast(t, meta)
            except (RuntimeError, TypeError, NotImplementedError) as err:
                raise ReadError(f"{name}: cannot cast {orig.dtype} to {meta.dtype} "
                                f"({str(err).splitlines()[0][:120]})") from None
        self._done(name, (tuple(t.shape), meta.dtype, checksum(t)))
        return t

    def _into(self, meta: TensorMeta) -> Any:
        """A view of the one buffer every computed tensor goes into (the largest's size)."""
        import torch

        if self._dbuf is None:
            largest = max(m.nbytes for _, m, o in self.items if m is o)
            try:
                self._dbuf = torch.empty(largest, dtype=torch.uint8)
            except (RuntimeError, MemoryError):
                from pttui.core.base.humanize import nbytes

                raise ReadError(f"{meta.key}: the largest tensor the recipe computes needs "
                                f"{nbytes(largest)} of memory, more than this machine "
                                "can give; check the recipe's sizes") from None
        return self._dbuf[:meta.nbytes].view(torch_dtype(meta.dtype)).view(tuple(meta.shape))

    def _leaf(self, src: TensorSource, leaf: TensorMeta) -> Any:
        """A stored tensor a value op reads, cast as the recipe had cast it before."""
        t = src.read(self.source[leaf.key])
        if t.dtype != torch_dtype(leaf.dtype, leaf.key):
            t = t.to(torch_dtype(leaf.dtype, leaf.key))
        return t

    def _cast(self, t: Any, meta: TensorMeta) -> Any:
        import torch

        if self._buf is None:
            largest = max(m.nbytes for _, m, o in self.items
                          if m.dtype != o.dtype and m is not o)
            self._buf = torch.empty(largest, dtype=torch.uint8)
        out = self._buf[:meta.nbytes].view(torch_dtype(meta.dtype)).view(tuple(meta.shape))
        return out.copy_(t)

    def same(self, name: str, first: str) -> None:
        """``name`` is written as the very tensor ``first`` is (tied): same digest."""
        self.check_cancel()
        self._done(name, self.digests[first])

    def _done(self, name: str, digest: tuple[tuple[int, ...], str, str]) -> None:
        self.digests[name] = digest
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.items))


def view_key(meta: TensorMeta, dtype: str | None = None) -> tuple:
    """Tensors with equal keys are the same bytes (tied weights): written once. Two
    tensors computed alike from the same bytes (a tied embedding and head, resized by
    one op) are the same bytes too."""
    if isinstance(meta, Derived):
        d = meta.derive
        return ("derived", d.fn, d.args, tuple(view_key(i) for i in d.inputs),
                tuple(meta.shape), dtype or meta.dtype)
    ident = meta.storage.ident if meta.storage is not None else ("<dcp>", meta.key)
    return (ident, meta.storage_offset, tuple(meta.shape),
            tuple(meta.stride) if meta.stride is not None else None, dtype or meta.dtype)
