"""Compare two checkpoints: keys, shapes, dtypes on metadata, values on request.

Metadata comparison is instant for any size. Value comparison streams one tensor
pair at a time through :class:`TensorSource` (and big tensors in chunks), so
comparing two 100 GB files needs memory for one chunk, not one file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from pttui.core.base.meta import Checkpoint, ReadError
from pttui.core.read.tensordata import TensorSource, as_bytes

CHUNK = 1 << 22  # elements per step of a value comparison (32 MiB in float64)


@dataclass
class DiffReport:
    a: str
    b: str
    common: int = 0
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    shape_diff: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dtype_diff: list[tuple[str, str, str]] = field(default_factory=list)
    values: bool = False
    compared: int = 0  # tensor pairs whose values were compared
    identical: int = 0  # of those, bit-identical with the same dtype
    # key -> largest |a - b| of the pairs that differ (None: not a numeric dtype)
    max_abs_diff: dict[str, float | None] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # key -> why not compared

    @property
    def same(self) -> bool:
        """Nothing that was compared differs."""
        return not (self.only_in_a or self.only_in_b or self.shape_diff or self.dtype_diff
                    or self.max_abs_diff)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "same": self.same, "common": self.common,
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
            "shape_diff": [{"key": k, "shape_a": list(sa), "shape_b": list(sb)}
                           for k, sa, sb in self.shape_diff],
            "dtype_diff": [{"key": k, "dtype_a": da, "dtype_b": db}
                           for k, da, db in self.dtype_diff],
            "values": None if not self.values else {
                "compared": self.compared, "identical": self.identical,
                "max_abs_diff": {k: _json_float(v) for k, v in self.max_abs_diff.items()},
                "unreadable": self.unreadable},
        }


def _json_float(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return "inf" if v > 0 else "nan"


def diff(a: Checkpoint, b: Checkpoint, values: bool = False,
         progress: Callable[[int, int], Any] | None = None) -> DiffReport:
    """Compare the selected containers of ``a`` and ``b``, key by key."""
    ta, tb = a.tensors, b.tensors
    rep = DiffReport(a.path, b.path, values=values)
    rep.only_in_a = [k for k in ta if k not in tb]
    rep.only_in_b = [k for k in tb if k not in ta]
    common = [k for k in ta if k in tb]
    rep.common = len(common)
    pairs = []
    for k in common:
        ma, mb = ta[k], tb[k]
        if tuple(ma.shape) != tuple(mb.shape):
            rep.shape_diff.append((k, tuple(ma.shape), tuple(mb.shape)))
            continue
        if ma.dtype != mb.dtype:
            rep.dtype_diff.append((k, ma.dtype, mb.dtype))
        pairs.append(k)
    if not values:
        return rep
    with TensorSource(a) as sa, TensorSource(b) as sb:
        for i, k in enumerate(pairs):
            try:
                x, y = sa.read(ta[k]), sb.read(tb[k])
            except ReadError as err:
                rep.unreadable[k] = str(err)
                continue
            rep.compared += 1
            if ta[k].dtype == tb[k].dtype and _same_bytes(x, y):
                rep.identical += 1
            else:
                rep.max_abs_diff[k] = max_abs_diff(x, y)
            del x, y
            sa.drop(ta[k])
            sb.drop(tb[k])
            if progress is not None:
                progress(i + 1, len(pairs))
    return rep


def _same_bytes(x: Any, y: Any) -> bool:
    import torch

    return torch.equal(as_bytes(x), as_bytes(y))


def max_abs_diff(x: Any, y: Any) -> float | None:
    """Largest |x - y| in float64 (complex128 for complex), chunk by chunk.

    NaN matches NaN; NaN against a number counts as infinite. None when a dtype
    has no arithmetic in torch (bits16, uint4, ...).
    """
    import torch

    wide = torch.complex128 if (x.is_complex() or y.is_complex()) else torch.float64
    try:
        fx, fy = x.reshape(-1), y.reshape(-1)
        worst = 0.0
        for s in range(0, fx.numel(), CHUNK):
            cx, cy = fx[s:s + CHUNK].to(wide), fy[s:s + CHUNK].to(wide)
            d = (cx - cy).abs()
            both_nan = torch.isnan(cx) & torch.isnan(cy)
            d = torch.where((cx == cy) | both_nan, torch.zeros_like(d), d)
            d = torch.nan_to_num(d, nan=math.inf)
            if d.numel():
                worst = max(worst, float(d.max()))
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    return worst
