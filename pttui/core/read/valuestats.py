"""Value statistics of one stored tensor (min, max, mean, std, NaN/Inf counts).

Reads the tensor's bytes through TensorSource (no unpickling) and imports torch:
call it from a worker. Large tensors are reduced in chunks so memory stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta

CHUNK = 1 << 22  # elements per reduction step


@dataclass
class ValueStats:
    numel: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    nan: int
    inf: int
    zeros: int


def tensor_stats(ckpt: Checkpoint, meta: TensorMeta, *, cancel: Any = None,
                 progress: Callable[[int, int], None] | None = None) -> ValueStats:
    """Statistics of ``meta``'s values as stored (``meta.key`` is the source key).

    ``cancel`` (a ``threading.Event``) is checked between chunks and raises
    :class:`Cancelled`; ``progress(done, total)`` counts elements. Mean and
    variance merge per-chunk moments (Chan et al.), so a 10^9-element tensor
    with a large mean keeps its small std instead of cancelling it away.
    """
    import torch

    from pttui.core.read.tensordata import TensorSource

    with TensorSource(ckpt) as src:
        t = src.read(meta)
        if t.is_complex() or t.dtype == torch.bool:
            t = t.to(torch.float64) if t.dtype == torch.bool else t.abs()
        try:
            flat = t.reshape(-1)
        except RuntimeError as err:
            raise ReadError(f"{meta.key}: cannot read values ({err})") from None
        n = flat.numel()
        acc = _Moments()
        nan = inf = zeros = 0
        for start in range(0, n, CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{meta.key}: statistics cancelled")
            c = flat[start:start + CHUNK].to(torch.float64)
            isnan, isinf = torch.isnan(c), torch.isinf(c)
            nan += int(isnan.sum())
            inf += int(isinf.sum())
            zeros += int((c == 0).sum())
            good = c[~(isnan | isinf)]
            if good.numel():
                acc.add(good)
            if progress is not None:
                progress(min(start + CHUNK, n), n)
        return ValueStats(n, acc.lo, acc.hi, acc.mean if acc.n else None, acc.std(), nan, inf,
                          zeros)


class Cancelled(Exception):
    """The caller's cancel event was set between two chunks."""


class _Moments:
    """Count, mean, sum of squared deviations, min and max, merged chunk by chunk."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo: float | None = None
        self.hi: float | None = None

    def add(self, good: Any) -> None:
        k = good.numel()
        mean = float(good.mean())
        m2 = float(((good - mean) ** 2).sum())
        delta, total = mean - self.mean, self.n + k
        self.mean += delta * k / total
        self.m2 += m2 + delta * delta * self.n * k / total
        self.n = total
        cmin, cmax = float(good.min()), float(good.max())
        self.lo = cmin if self.lo is None else min(self.lo, cmin)
        self.hi = cmax if self.hi is None else max(self.hi, cmax)

    def std(self) -> float | None:
        return (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else None
