"""The values of a ``Derived`` tensor: what the value ops promise, computed with torch at
export time, one output tensor at a time.

Each function is the library's own arithmetic where one defines the repair (timm's
``adapt_input_conv`` and ``resample_abs_pos_embed``, torchvision's
``interpolate_embeddings``, transformers' mean resizing); the tests compare them with
those libraries. Interpolation and means are computed in float32 and cast back, as
timm and transformers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pttui.core.base.meta import Derived, ReadError, TensorMeta


def compute(meta: TensorMeta, read: Callable[[TensorMeta], Any], out: Any = None) -> Any:
    """The tensor ``meta`` stands for: ``read(meta)`` for a stored one (cast to
    ``meta.dtype`` by the caller), else its derivation applied to its inputs.

    ``out`` (a contiguous tensor of ``meta``'s shape and dtype) receives the result:
    moving views (transpose, narrow, reshape) cost one copy into it and nothing else,
    and joins write straight into it. The export passes one buffer, reused for every
    tensor, because fresh allocations freed one by one leave the C heap holding them."""
    if not isinstance(meta, Derived):
        return read(meta)
    from pttui.core.read.tensordata import torch_dtype

    d = meta.derive
    want = torch_dtype(meta.dtype, meta.key)
    inputs = [compute(i, read) for i in d.inputs]
    direct = out is not None and d.fn in _INTO and all(x.dtype == want for x in inputs)
    try:
        got = FUNCTIONS[d.fn](inputs, *d.args, **({"out": out} if direct else {}))
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        raise ReadError(f"{meta.key}: cannot compute {d.fn} "
                        f"({str(err).splitlines()[0][:160]})") from None
    if tuple(got.shape) != tuple(meta.shape):
        raise ReadError(f"{meta.key}: {d.fn} gave {list(got.shape)}, the recipe promised "
                        f"{list(meta.shape)}; please report this")
    if out is not None:
        return got if got is out else out.copy_(got)
    return got.to(want).contiguous() if got.dtype != want else got.contiguous()


def _transpose(xs: list, a: int, b: int) -> Any:
    return xs[0].transpose(a, b)


def _reshape(xs: list, *shape: int) -> Any:
    return xs[0].reshape(shape)


def _cat(xs: list, dim: int, out: Any = None) -> Any:
    import torch

    return torch.cat(xs, dim) if out is None else torch.cat(xs, dim, out=out)


def _narrow(xs: list, dim: int, start: int, length: int) -> Any:
    return xs[0].narrow(dim, start, length)


def _stack(xs: list, dim: int, out: Any = None) -> Any:
    import torch

    return torch.stack(xs, dim) if out is None else torch.stack(xs, dim, out=out)


def _select(xs: list, dim: int, index: int) -> Any:
    return xs[0].select(dim, index)


def _resample(xs: list, prefix: int, old_h: int, old_w: int, new_h: int, new_w: int,
              method: str) -> Any:
    """timm: bicubic, antialias (``resample_abs_pos_embed``'s defaults); torchvision:
    bicubic, align_corners (``interpolate_embeddings``). Prefix tokens are kept."""
    import torch
    import torch.nn.functional as F

    x = xs[0]
    flat = x.dim() == 2
    if flat:
        x = x.unsqueeze(0)
    dtype, dim = x.dtype, x.shape[-1]
    head, grid = x[:, :prefix], x[:, prefix:].float()
    grid = grid.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)
    if method == "timm":
        grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", antialias=True)
    else:
        grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", align_corners=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim).to(dtype)
    out = torch.cat([head, grid], dim=1)
    return out[0] if flat else out


def _adapt_channels(xs: list, channels: int) -> Any:
    """timm's ``adapt_input_conv``: 1 channel sums over RGB (over each RGB group of a
    space-to-depth stem); N > 3 repeats RGB and scales by 3/N."""
    import math

    w = xs[0]
    dtype, w = w.dtype, w.float()
    out_ch, have = w.shape[:2]
    if channels == 1:
        if have > 3:
            w = w.reshape(out_ch, have // 3, 3, *w.shape[2:]).sum(dim=2)
        else:
            w = w.sum(dim=1, keepdim=True)
    else:
        repeat = math.ceil(channels / 3)
        w = w.repeat(1, repeat, *([1] * (w.dim() - 2)))[:, :channels]
        w = w * (3 / float(channels))
    return w.to(dtype)


def _resize_rows(xs: list, rows: int, fill: str, out: Any = None) -> Any:
    """Kept rows exact; new rows the mean of the old ones (in float32) or zeros."""
    import torch

    x = xs[0]
    old = x.shape[0]
    if rows <= old:
        return x[:rows]
    if out is None:
        out = torch.empty((rows, *x.shape[1:]), dtype=x.dtype)
    out[:old] = x
    if fill == "mean":
        out[old:] = x.float().mean(dim=0).to(x.dtype)
    else:
        out[old:] = 0
    return out


_INTO = ("cat", "stack", "resize_rows")  # they write into ``out`` themselves
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "transpose": _transpose, "reshape": _reshape, "cat": _cat, "narrow": _narrow,
    "stack": _stack, "select": _select, "resample": _resample,
    "adapt_channels": _adapt_channels, "resize_rows": _resize_rows,
}
