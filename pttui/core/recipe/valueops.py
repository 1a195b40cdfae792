"""Recipe ops that change values and shapes, one tensor in, one out: transpose,
reshape, resample a position embedding, adapt input channels, resize rows (the ops
that join or part tensors are in ``joinops.py``).

Like every op they run on metadata only: each puts a ``Derived`` in the key map (the
output's shape and dtype and how it is computed), so previews stay free and the
export computes one output tensor at a time (``values.py``). Each refuses, in one
line, an input it does not fit, and says how to undo it (``reverse``) where an exact
inverse exists. Undoing on metadata gives back the very TensorMeta it started from,
so a recipe and its reverse replay to the source layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import isqrt, prod
from typing import Any, ClassVar

from pttui.core.base.meta import Derived, ReadError, TensorMeta
from pttui.core.recipe.args import matcher, quote
from pttui.core.recipe.op import Op, Tensors

__all__ = ["AdaptInputChannels", "ResamplePosEmbed", "Reshape", "ResizeRows", "Transpose",
           "ValueOp"]
METHODS = {"timm": "bicubic with antialiasing, as timm's resample_abs_pos_embed",
           "torchvision": "bicubic with align_corners, as torchvision's interpolate_embeddings"}
FILLS = {"mean": "the mean of the kept rows (transformers' mean_resizing, without its "
                 "1e-9-scaled noise)", "zeros": "zeros"}


def _int(value: Any, what: str, least: int = 0) -> int:
    if type(value) is not int or value < least:
        raise ReadError(f"{what}: expected an integer >= {least}, got {value!r}")
    return value


def _ints(values: Any, what: str, least: int = 0) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ReadError(f"{what}: expected a list of integers, got {values!r}")
    return tuple(_int(v, what, least) for v in values)


def _shape(meta: TensorMeta) -> str:
    return str(list(meta.shape))


def _exact(key: str) -> str:
    """A regex that matches ``key`` only (for the per-key reverse of a pattern op)."""
    return "^" + re.escape(key) + "$"


class ValueOp(Op):
    """What the value ops share: they change values, and say so."""

    changes_values: ClassVar[bool] = True

    def reverse(self, before: Tensors) -> list[Op] | None:
        """The ops that undo this one on ``before`` (the map it was applied to), or
        None where values are lost or interpolated."""
        return None


class _PatternOp(ValueOp):
    """An op applied to each key a pattern matches, one tensor in, one out."""

    pattern: str
    kind: str

    def each(self, key: str, meta: TensorMeta) -> TensorMeta:
        raise NotImplementedError

    def apply(self, tensors: Tensors) -> Tensors:
        hit, out, hits = matcher(self.pattern, self.kind), {}, 0
        for key, meta in tensors.items():
            if hit(key):
                out[key] = self.each(key, meta)
                hits += 1
            else:
                out[key] = meta
        if not hits:
            raise ReadError(f"{self.name}: no key matches {quote(self.pattern)}")
        return out

    def matched(self, tensors: Tensors) -> dict[str, TensorMeta]:
        hit = matcher(self.pattern, self.kind)
        return {k: m for k, m in tensors.items() if hit(k)}

    @property
    def which(self) -> str:
        return quote(self.pattern) + (" (regex)" if self.kind == "regex" else "")


def _undo(meta: TensorMeta, fn: str, args: tuple) -> TensorMeta | None:
    """The input of ``meta`` when ``meta`` is ``fn(args)`` of it with no cast between."""
    if isinstance(meta, Derived) and meta.derive.fn == fn and meta.derive.args == args:
        inner = meta.derive.inputs[0]
        if inner.dtype == meta.dtype:
            return inner
    return None


@dataclass(frozen=True)
class Transpose(_PatternOp):
    """Swap two dims: HF ``Conv1D`` weights ([in, out]) for ``nn.Linear`` ([out, in])."""

    pattern: str
    kind: str = "glob"
    dims: tuple[int, ...] = (0, 1)
    name: ClassVar[str] = "transpose"

    def __post_init__(self) -> None:
        matcher(self.pattern, self.kind, "transpose")
        dims = _ints(self.dims, "transpose dims")
        if len(dims) != 2 or dims[0] == dims[1]:
            raise ReadError(f"transpose: dims must be two different dims, got {list(dims)}")
        object.__setattr__(self, "dims", dims)

    def each(self, key: str, meta: TensorMeta) -> TensorMeta:
        a, b = self.dims
        if len(meta.shape) <= max(a, b):
            raise ReadError(f"transpose: {quote(key)} has shape {_shape(meta)}: no dims "
                            f"{a} and {b} to swap")
        for args in (self.dims, self.dims[::-1]):
            undone = _undo(meta, "transpose", args)
            if undone is not None:
                return undone
        shape = list(meta.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return Derived.of("transpose", self.dims, (meta,), tuple(shape), meta.dtype)

    def reverse(self, before: Tensors) -> list[Op]:
        return [self]

    def describe(self) -> str:
        dims = "" if self.dims == (0, 1) else f" (dims {self.dims[0]}, {self.dims[1]})"
        return f"transpose {self.which}{dims}"


@dataclass(frozen=True)
class Reshape(_PatternOp):
    """Same elements, another shape: ``Linear [o, i]`` <-> ``Conv2d 1x1 [o, i, 1, 1]``."""

    pattern: str
    shape: tuple[int, ...]
    kind: str = "glob"
    name: ClassVar[str] = "reshape"

    def __post_init__(self) -> None:
        matcher(self.pattern, self.kind, "reshape")
        object.__setattr__(self, "shape", _ints(self.shape, "reshape shape"))

    def each(self, key: str, meta: TensorMeta) -> TensorMeta:
        if prod(self.shape) != meta.numel:
            raise ReadError(f"reshape: {quote(key)} has {meta.numel:,} elements "
                            f"({_shape(meta)}); {list(self.shape)} holds {prod(self.shape):,}")
        if isinstance(meta, Derived) and meta.derive.fn == "reshape":
            inner = meta.derive.inputs[0]
            if tuple(inner.shape) == self.shape and inner.dtype == meta.dtype:
                return inner
            meta = inner if inner.dtype == meta.dtype else meta
        if tuple(meta.shape) == self.shape:
            return meta
        return Derived.of("reshape", self.shape, (meta,), self.shape, meta.dtype)

    def reverse(self, before: Tensors) -> list[Op]:
        return [Reshape(_exact(k), tuple(m.shape), "regex")
                for k, m in self.matched(before).items()]

    def describe(self) -> str:
        return f"reshape {self.which} to {list(self.shape)}"


@dataclass(frozen=True)
class ResizeRows(_PatternOp):
    """Grow or shrink dim 0 (a vocabulary, an embedding table and its tied head)."""

    pattern: str
    rows: int
    kind: str = "glob"
    fill: str = "mean"
    name: ClassVar[str] = "resize_rows"

    def __post_init__(self) -> None:
        matcher(self.pattern, self.kind, "resize rows")
        _int(self.rows, "resize rows", 1)
        if self.fill not in FILLS:
            raise ReadError(f"resize rows: fill must be one of {', '.join(FILLS)}, "
                            f"got {self.fill!r}")

    def each(self, key: str, meta: TensorMeta) -> TensorMeta:
        if not meta.shape:
            raise ReadError(f"resize rows: {quote(key)} is a scalar: it has no rows")
        if meta.shape[0] == self.rows:
            return meta
        if isinstance(meta, Derived) and meta.derive.fn == "resize_rows":
            inner = meta.derive.inputs[0]
            if inner.shape[0] == self.rows and inner.dtype == meta.dtype:
                return inner  # a grow undone by its shrink: the rows kept are the old ones
        shape = (self.rows, *meta.shape[1:])
        return Derived.of("resize_rows", (self.rows, self.fill), (meta,), shape, meta.dtype)

    def reverse(self, before: Tensors) -> list[Op] | None:
        hit = self.matched(before)
        if any(m.shape and m.shape[0] > self.rows for m in hit.values()):
            return None  # a shrink lost rows
        return [ResizeRows(_exact(k), m.shape[0], "regex", self.fill)
                for k, m in hit.items() if m.shape]

    def describe(self) -> str:
        return (f"resize the rows of {self.which} to {self.rows:,} "
                f"(new rows: {self.fill}; a shrink drops the last rows)")


@dataclass(frozen=True)
class AdaptInputChannels(_PatternOp):
    """The first conv for another input channel count, as timm's ``adapt_input_conv``:
    1 channel sums over RGB; N channels repeat RGB and scale by 3/N."""

    pattern: str
    channels: int
    kind: str = "glob"
    name: ClassVar[str] = "adapt_input_channels"

    def __post_init__(self) -> None:
        matcher(self.pattern, self.kind, "adapt input channels")
        _int(self.channels, "adapt input channels", 1)

    def each(self, key: str, meta: TensorMeta) -> TensorMeta:
        what = f"adapt input channels: {quote(key)} ({_shape(meta)})"
        if len(meta.shape) < 3:
            raise ReadError(f"{what} is no conv weight [out, in, kernel...]")
        have = meta.shape[1]
        if have == self.channels:
            raise ReadError(f"{what} already takes {have} input channels")
        if self.channels == 1 and have > 3 and have % 3:
            raise ReadError(f"{what}: {have} input channels are not RGB groups; "
                            "only 3 (or a multiple of 3) can be summed to 1")
        if self.channels != 1 and have != 3:
            raise ReadError(f"{what}: only RGB weights (3 input channels) can be spread "
                            f"over {self.channels}")
        shape = (meta.shape[0], self.channels, *meta.shape[2:])
        return Derived.of("adapt_channels", (self.channels,), (meta,), shape, meta.dtype)

    def describe(self) -> str:
        how = ("summed over RGB" if self.channels == 1
               else f"RGB repeated and scaled by 3/{self.channels}")
        return f"adapt {self.which} to {self.channels} input channel(s) ({how}, as timm)"


@dataclass(frozen=True)
class ResamplePosEmbed(ValueOp):
    """An absolute position embedding on a new patch grid: prefix (class/distillation)
    tokens kept exactly, the grid interpolated bicubically as timm or torchvision do."""

    key: str
    grid: tuple[int, ...]
    prefix: int | None = None
    old_grid: tuple[int, ...] | None = None
    method: str = "timm"
    name: ClassVar[str] = "resample_pos_embed"

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ReadError(f"resample position embedding: expected a key, got {self.key!r}")
        object.__setattr__(self, "grid", _grid(self.grid, "grid"))
        if self.old_grid is not None:
            object.__setattr__(self, "old_grid", _grid(self.old_grid, "old grid"))
        if self.prefix is not None:
            _int(self.prefix, "resample position embedding: prefix tokens")
        if self.method not in METHODS:
            raise ReadError(f"resample position embedding: method must be "
                            f"{' or '.join(METHODS)}, got {self.method!r}")

    def apply(self, tensors: Tensors) -> Tensors:
        meta = tensors.get(self.key)
        if meta is None:
            raise ReadError(f"resample position embedding: no key {quote(self.key)}")
        what = f"resample position embedding: {quote(self.key)} ({_shape(meta)})"
        if len(meta.shape) not in (2, 3) or (len(meta.shape) == 3 and meta.shape[0] != 1):
            raise ReadError(f"{what} is not [1, tokens, dim] or [tokens, dim]")
        tokens = meta.shape[-2]
        prefix, old = self.layout(tokens)
        if prefix < 0 or prefix + old[0] * old[1] != tokens:
            raise ReadError(f"{what}: a {old[0]}x{old[1]} grid" + (
                f" and {prefix} prefix token(s) make {prefix + old[0] * old[1]} tokens"
                if prefix >= 0 else f" alone makes {old[0] * old[1]} tokens") +
                f", not {tokens}")
        new = (*meta.shape[:-2], prefix + self.grid[0] * self.grid[1], meta.shape[-1])
        if old == self.grid:
            return dict(tensors)
        out = dict(tensors)
        out[self.key] = Derived.of("resample", (prefix, *old, *self.grid, self.method),
                                   (meta,), new, meta.dtype)
        return out

    def layout(self, tokens: int) -> tuple[int, tuple[int, int]]:
        """(prefix tokens, old grid): as given (the prefix follows from an old grid), else
        the fewest prefix tokens (0-8) that leave a square grid."""
        if self.old_grid is not None:
            h, w = self.old_grid
            return (tokens - h * w if self.prefix is None else self.prefix), (h, w)
        found = square_grid(tokens, self.prefix)
        if found is None:
            raise ReadError(f"resample position embedding: {quote(self.key)} has {tokens} "
                            "tokens, not a square grid plus up to 8 prefix tokens; give the "
                            "old grid and the prefix token count")
        return found[0], (found[1], found[1])

    def describe(self) -> str:
        h, w = self.grid
        keep = "" if self.prefix is None else f", {self.prefix} prefix token(s) kept"
        return (f"resample {quote(self.key)} to a {h}x{w} grid ({self.method}: "
                f"{METHODS[self.method]}{keep})")


def square_grid(tokens: int, prefix: int | None = None) -> tuple[int, int] | None:
    """(prefix tokens, side) of a position embedding of ``tokens``: the given prefix, else
    the fewest (0-8) that leave a square grid; None when none does."""
    for p in ([prefix] if prefix is not None else range(9)):
        side = isqrt(max(tokens - p, 0))
        if tokens - p > 0 and side * side == tokens - p:
            return p, side
    return None


def _grid(value: Any, what: str) -> tuple[int, int]:
    if type(value) is int:
        value = (value, value)
    grid = _ints(value, f"resample position embedding: {what}", 1)
    if len(grid) != 2:
        raise ReadError(f"resample position embedding: {what} must be [height, width]")
    return grid  # type: ignore[return-value]
