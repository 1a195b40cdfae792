"""Value ops that join or part tensors: concat/split (q/k/v <-> fused qkv, gate/up <->
gate_up) and stack/unstack (per-expert weights <-> one 3-D tensor).

Keys are named by templates (``templates.py``): ``*`` is the same text in every key of
one group, ``#`` the index of a stacked tensor. Joining what a split parted (or the
reverse) gives back the very TensorMeta it started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pttui.core.base.meta import Derived, ReadError, TensorMeta
from pttui.core.recipe.args import quote
from pttui.core.recipe.op import Op, RecipeConflict, Tensors
from pttui.core.recipe.templates import Template, same_stars, templates
from pttui.core.recipe.valueops import ValueOp, _int, _ints, _shape

__all__ = ["Concat", "Split", "Stack", "Unstack"]


def _parts_of(meta: TensorMeta, fn: str, dim: int) -> tuple[TensorMeta, ...] | None:
    """The inputs of ``meta`` when it is ``cat``/``stack`` along ``dim`` with no cast."""
    if isinstance(meta, Derived) and meta.derive.fn == fn and meta.derive.args == (dim,) \
            and all(i.dtype == meta.dtype for i in meta.derive.inputs):
        return meta.derive.inputs
    return None


def _whole(parts: list[TensorMeta], fn: str, dim: int) -> TensorMeta | None:
    """The tensor ``parts`` were cut from by ``fn`` (narrow/select) along ``dim``, when
    they are all its pieces in order: joining them gives it back."""
    if not all(isinstance(p, Derived) and p.derive.fn == fn for p in parts):
        return None
    source = parts[0].derive.inputs[0]
    if any(p.derive.inputs[0] != source or p.dtype != source.dtype for p in parts):
        return None
    at = 0
    for p in parts:
        if p.derive.args[0] != dim or p.derive.args[1] != at:
            return None
        at += p.derive.args[2] if fn == "narrow" else 1
    return source if at == source.shape[dim] else None


def _joined(what: str, keys: list[str], metas: list[TensorMeta], dim: int, stack: bool
            ) -> tuple[int, ...]:
    first = metas[0]
    for key, meta in zip(keys, metas):
        if meta.dtype != first.dtype:
            raise ReadError(f"{what}: {quote(keys[0])} is {first.dtype} but {quote(key)} "
                            f"is {meta.dtype}; cast them to one dtype first")
        if len(meta.shape) != len(first.shape) or len(meta.shape) < (0 if stack else dim + 1):
            raise ReadError(f"{what}: {quote(key)} has shape {_shape(meta)}, "
                            f"{quote(keys[0])} {_shape(first)}")
        other = [s for i, s in enumerate(meta.shape) if stack or i != dim]
        if other != [s for i, s in enumerate(first.shape) if stack or i != dim]:
            raise ReadError(f"{what}: {quote(key)} {_shape(meta)} and {quote(keys[0])} "
                            f"{_shape(first)} differ " + (
                                "in shape" if stack else f"in more than dim {dim}"))
    if stack:
        if dim > len(first.shape):
            raise ReadError(f"{what}: dim {dim} is out of range for {_shape(first)}")
        shape = list(first.shape)
        shape.insert(dim, len(metas))
        return tuple(shape)
    shape = list(first.shape)
    shape[dim] = sum(m.shape[dim] for m in metas)
    return tuple(shape)


def _emit(tensors: Tensors, groups: dict[str, tuple[list[str], list[tuple[str, TensorMeta]]]],
          what: str) -> Tensors:
    """The map with each group's keys replaced by its outputs, placed where the group's
    first key stood; a new name another tensor holds is a RecipeConflict."""
    consumed = {k for keys, _ in groups.values() for k in keys}
    out: Tensors = {}
    for key, meta in tensors.items():
        if key in groups:
            for new, value in groups[key][1]:
                if new in out or (new in tensors and new not in consumed):
                    raise RecipeConflict(f"{what}: {quote(new)} exists already; drop or "
                                         "rename it first")
                out[new] = value
        elif key not in consumed:
            if key in out:
                raise RecipeConflict(f"{what}: {quote(key)} would be written twice")
            out[key] = meta
    return out


def _members(template: Template, tensors: Tensors) -> dict[tuple[str, ...], dict[int, str]]:
    """{the `*` texts: {index: key}} of the keys a `#` template matches."""
    found: dict[tuple[str, ...], dict[int, str]] = {}
    for key in tensors:
        m = template.match(key)
        if m is not None:
            found.setdefault(m[0], {})[m[1]] = key  # type: ignore[index]
    return found


@dataclass(frozen=True)
class Concat(ValueOp):
    """Several tensors joined along ``dim`` into one: q/k/v -> ``qkv`` or
    ``in_proj_weight``, gate/up -> ``gate_up``. Templates: ``*`` is one text in all."""

    sources: tuple[str, ...]
    target: str
    dim: int = 0
    name: ClassVar[str] = "concat"

    def __post_init__(self) -> None:
        srcs = templates(self.sources, "concat", least=2)
        same_stars([*srcs, Template(self.target, "concat")], "concat")
        object.__setattr__(self, "sources", tuple(self.sources))
        _int(self.dim, "concat dim")

    def groups(self, tensors: Tensors) -> dict[str, tuple[list[str], TensorMeta, str]]:
        """{first source key: (source keys, the joined tensor, its name)}."""
        srcs = [Template(s, "concat") for s in self.sources]
        tgt = Template(self.target, "concat")
        found: dict[str, tuple[list[str], TensorMeta, str]] = {}
        for key in tensors:
            m = srcs[0].match(key)
            if m is None:
                continue
            keys, new = [t.fill(m[0]) for t in srcs], tgt.fill(m[0])
            absent = [k for k in keys if k not in tensors]
            if absent:
                raise ReadError(f"concat: {quote(absent[0])} is missing (it joins "
                                f"{quote(key)} into {quote(new)})")
            metas = [tensors[k] for k in keys]
            shape = _joined(f"concat into {quote(new)}", keys, metas, self.dim, stack=False)
            whole = _whole(metas, "narrow", self.dim)
            found[key] = (keys, whole if whole is not None else Derived.of(
                "cat", (self.dim,), tuple(metas), shape, metas[0].dtype), new)
        if not found:
            raise ReadError(f"concat: no key matches {quote(self.sources[0])}")
        return found

    def apply(self, tensors: Tensors) -> Tensors:
        groups = {first: (keys, [(new, meta)])
                  for first, (keys, meta, new) in self.groups(tensors).items()}
        return _emit(tensors, groups, "concat")

    def reverse(self, before: Tensors) -> list[Op]:
        sizes: dict[tuple[int, ...], list[str]] = {}
        for keys, _meta, new in self.groups(before).values():
            sizes.setdefault(tuple(before[k].shape[self.dim] for k in keys), []).append(new)
        if len(sizes) == 1:
            return [Split(self.target, self.sources, self.dim, next(iter(sizes)))]
        return [Split(new, tuple(keys), self.dim, tuple(before[k].shape[self.dim] for k in keys))
                for keys, _meta, new in self.groups(before).values()]

    def describe(self) -> str:
        parts = " + ".join(quote(s) for s in self.sources)
        return f"concat {parts} -> {quote(self.target)} (dim {self.dim})"


@dataclass(frozen=True)
class Split(ValueOp):
    """One tensor cut along ``dim`` into several: fused ``qkv`` -> q/k/v. ``sizes``
    default to equal parts."""

    source: str
    targets: tuple[str, ...]
    dim: int = 0
    sizes: tuple[int, ...] | None = None
    name: ClassVar[str] = "split"

    def __post_init__(self) -> None:
        tgts = templates(self.targets, "split", least=2)
        same_stars([Template(self.source, "split"), *tgts], "split")
        object.__setattr__(self, "targets", tuple(self.targets))
        _int(self.dim, "split dim")
        if self.sizes is not None:
            sizes = _ints(self.sizes, "split sizes", 1)
            if len(sizes) != len(tgts):
                raise ReadError(f"split: {len(sizes)} sizes for {len(tgts)} targets")
            object.__setattr__(self, "sizes", sizes)

    def apply(self, tensors: Tensors) -> Tensors:
        src = Template(self.source, "split")
        tgts = [Template(t, "split") for t in self.targets]
        groups: dict[str, tuple[list[str], list[tuple[str, TensorMeta]]]] = {}
        for key, meta in tensors.items():
            m = src.match(key)
            if m is None:
                continue
            names = [t.fill(m[0]) for t in tgts]
            groups[key] = ([key], list(zip(names, self._parts(key, meta))))
        if not groups:
            raise ReadError(f"split: no key matches {quote(self.source)}")
        return _emit(tensors, groups, "split")

    def _parts(self, key: str, meta: TensorMeta) -> list[TensorMeta]:
        n, dim = len(self.targets), self.dim
        if len(meta.shape) <= dim:
            raise ReadError(f"split: {quote(key)} has shape {_shape(meta)}: no dim {dim}")
        length = meta.shape[dim]
        sizes = self.sizes
        if sizes is None:
            if length % n:
                raise ReadError(f"split: {quote(key)} has {length} along dim {dim}, not "
                                f"{n} equal parts; give the sizes")
            sizes = (length // n,) * n
        elif sum(sizes) != length:
            raise ReadError(f"split: the sizes {list(sizes)} add up to {sum(sizes)}, but "
                            f"{quote(key)} has {length} along dim {dim}")
        parts = _parts_of(meta, "cat", dim)
        if parts is not None and [p.shape[dim] for p in parts] == list(sizes):
            return list(parts)
        out, at = [], 0
        for size in sizes:
            shape = list(meta.shape)
            shape[dim] = size
            out.append(Derived.of("narrow", (dim, at, size), (meta,), tuple(shape), meta.dtype))
            at += size
        return out

    def reverse(self, before: Tensors) -> list[Op]:
        return [Concat(self.targets, self.source, self.dim)]

    def describe(self) -> str:
        parts = " + ".join(quote(t) for t in self.targets)
        sizes = f", sizes {list(self.sizes)}" if self.sizes else ""
        return f"split {quote(self.source)} -> {parts} (dim {self.dim}{sizes})"


@dataclass(frozen=True)
class Stack(ValueOp):
    """Per-index tensors (``experts.#.w1.weight``) stacked into one along a new dim."""

    source: str
    target: str
    dim: int = 0
    name: ClassVar[str] = "stack"

    def __post_init__(self) -> None:
        same_stars([Template(self.source, "stack", index=True),
                    Template(self.target, "stack")], "stack")
        _int(self.dim, "stack dim")

    def apply(self, tensors: Tensors) -> Tensors:
        src, tgt = Template(self.source, "stack", index=True), Template(self.target, "stack")
        groups: dict[str, tuple[list[str], list[tuple[str, TensorMeta]]]] = {}
        for stars, by_index in _members(src, tensors).items():
            new = tgt.fill(stars)
            gap = next((i for i in range(len(by_index)) if i not in by_index), None)
            if gap is not None:
                raise ReadError(f"stack into {quote(new)}: index {gap} is missing "
                                f"({quote(src.fill(stars, gap))})")
            keys = [by_index[i] for i in range(len(by_index))]
            metas = [tensors[k] for k in keys]
            shape = _joined(f"stack into {quote(new)}", keys, metas, self.dim, stack=True)
            whole = _whole(metas, "select", self.dim)
            meta = whole if whole is not None else Derived.of(
                "stack", (self.dim,), tuple(metas), shape, metas[0].dtype)
            first = next(k for k in tensors if k in set(keys))
            groups[first] = (keys, [(new, meta)])
        if not groups:
            raise ReadError(f"stack: no key matches {quote(self.source)}")
        return _emit(tensors, groups, "stack")

    def reverse(self, before: Tensors) -> list[Op]:
        return [Unstack(self.target, self.source, self.dim)]

    def describe(self) -> str:
        return f"stack {quote(self.source)} -> {quote(self.target)} (new dim {self.dim})"


@dataclass(frozen=True)
class Unstack(ValueOp):
    """One tensor parted along ``dim`` into per-index tensors (``experts.#.w1.weight``)."""

    source: str
    target: str
    dim: int = 0
    name: ClassVar[str] = "unstack"

    def __post_init__(self) -> None:
        same_stars([Template(self.source, "unstack"),
                    Template(self.target, "unstack", index=True)], "unstack")
        _int(self.dim, "unstack dim")

    def apply(self, tensors: Tensors) -> Tensors:
        src, tgt = Template(self.source, "unstack"), Template(self.target, "unstack",
                                                              index=True)
        groups: dict[str, tuple[list[str], list[tuple[str, TensorMeta]]]] = {}
        for key, meta in tensors.items():
            m = src.match(key)
            if m is None:
                continue
            if len(meta.shape) <= self.dim:
                raise ReadError(f"unstack: {quote(key)} has shape {_shape(meta)}: no dim "
                                f"{self.dim}")
            parts = _parts_of(meta, "stack", self.dim)
            if parts is None:
                shape = tuple(s for i, s in enumerate(meta.shape) if i != self.dim)
                parts = tuple(Derived.of("select", (self.dim, i), (meta,), shape,
                                         meta.dtype) for i in range(meta.shape[self.dim]))
            groups[key] = ([key], [(tgt.fill(m[0], i), p) for i, p in enumerate(parts)])
        if not groups:
            raise ReadError(f"unstack: no key matches {quote(self.source)}")
        return _emit(tensors, groups, "unstack")

    def reverse(self, before: Tensors) -> list[Op]:
        return [Stack(self.target, self.source, self.dim)]

    def describe(self) -> str:
        return f"unstack {quote(self.source)} -> {quote(self.target)} (dim {self.dim})"
