"""Value statistics of one stored tensor (min, max, mean, std, NaN/Inf counts).

Reads the tensor's bytes through TensorSource (no unpickling) and imports torch:
call it from a worker. Large tensors are reduced in chunks so memory stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

from pttui.core.meta import Checkpoint, ReadError, TensorMeta

_CHUNK = 1 << 22  # elements per reduction step


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


def tensor_stats(ckpt: Checkpoint, meta: TensorMeta) -> ValueStats:
    """Statistics of ``meta``'s values as stored (``meta.key`` is the source key)."""
    import torch

    from pttui.core.tensordata import TensorSource

    with TensorSource(ckpt) as src:
        t = src.read(meta)
        if t.is_complex() or t.dtype == torch.bool:
            t = t.to(torch.float64) if t.dtype == torch.bool else t.abs()
        try:
            flat = t.reshape(-1)
        except RuntimeError as err:
            raise ReadError(f"{meta.key}: cannot read values ({err})") from None
        n = flat.numel()
        total = total_sq = 0.0
        lo = hi = None
        nan = inf = zeros = finite = 0
        for start in range(0, n, _CHUNK):
            c = flat[start:start + _CHUNK].to(torch.float64)
            isnan, isinf = torch.isnan(c), torch.isinf(c)
            nan += int(isnan.sum())
            inf += int(isinf.sum())
            zeros += int((c == 0).sum())
            good = c[~(isnan | isinf)]
            if good.numel():
                finite += good.numel()
                total += float(good.sum())
                total_sq += float((good * good).sum())
                cmin, cmax = float(good.min()), float(good.max())
                lo = cmin if lo is None else min(lo, cmin)
                hi = cmax if hi is None else max(hi, cmax)
        mean = total / finite if finite else None
        std = None
        if finite > 1 and mean is not None:
            var = max(total_sq / finite - mean * mean, 0.0) * finite / (finite - 1)
            std = var ** 0.5
        return ValueStats(n, lo, hi, mean, std, nan, inf, zeros)
