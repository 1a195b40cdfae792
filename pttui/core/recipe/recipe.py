"""A repair recipe: ordered, pure ops on a checkpoint's key -> TensorMeta map.

Ops never touch tensor bytes, so a preview of a 100 GB file costs nothing. The map's
key is the current name; each TensorMeta's ``.key`` keeps the source key it was read
under; ``Cast`` changes ``.dtype``, and a value op (``valueops.py``) puts a ``Derived``
in the map: the output's shape and dtype, and how it is computed from stored tensors.
After ``Recipe.apply`` the map tells the exporter everything: read ``meta.key`` (or
compute ``meta.derive``), cast to ``meta.dtype``, write under the new name. A recipe is
JSON so ``pttui fix --recipe`` can replay it without the UI.

Versions: 1 holds name ops only, 2 adds the value ops. A recipe is written with the
lowest version that can hold its ops, so a pttui that knows only 1 still replays what
it can.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta
from pttui.core.recipe import joinops, valueops  # noqa: F401  (they register their ops)
from pttui.core.recipe.args import (cast_dtype, compile_regex, literal_key, matcher, need_str,
                                    quote, rename_regex)
from pttui.core.recipe.op import OPS, Op, Tensors, _rename

VERSION = 2  # the newest this pttui reads and writes
VERSIONS = (1, 2)
_REAL_FLOAT = ("float", "bfloat")  # Cast leaves complex, integer and bool tensors alone


def op_from_json(data: Any) -> Op:
    """The op a ``to_json`` dict describes; anything else is a one-line ReadError."""
    if not isinstance(data, dict):
        raise ReadError(f"recipe op must be a JSON object, got {data!r}")
    args = dict(data)
    name = args.pop("op", None)
    cls = OPS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ReadError(f"unknown recipe op {name!r} (known: {', '.join(sorted(OPS))}); "
                        "was this recipe written by a newer pttui?")
    try:
        return cls(**args)
    except (TypeError, ReadError) as err:
        raise ReadError(f"recipe op {name!r}: {err}") from None


@dataclass(frozen=True)
class SelectContainer(Op):
    """Which container of the file holds the weights; chosen at read time, so identity here."""

    path: tuple[str, ...] = ()
    name: ClassVar[str] = "select_container"

    def __post_init__(self) -> None:
        if isinstance(self.path, str) or not all(isinstance(p, str) for p in self.path):
            raise ReadError(f"container path must be a list of strings, got {self.path!r}")
        object.__setattr__(self, "path", tuple(self.path))

    def describe(self) -> str:
        return "use container " + (quote(".".join(self.path)) if self.path else "(root)")


@dataclass(frozen=True)
class StripPrefix(Op):
    prefix: str
    name: ClassVar[str] = "strip_prefix"

    def __post_init__(self) -> None:
        need_str(self.prefix, "strip prefix")

    def apply(self, tensors: Tensors) -> Tensors:
        return _rename(tensors, lambda k: k.removeprefix(self.prefix))

    def describe(self) -> str:
        return f"strip prefix {quote(self.prefix)}"


@dataclass(frozen=True)
class AddPrefix(Op):
    """Prepend ``prefix``; with ``only``, just to keys the regex ``only`` finds."""

    prefix: str
    only: str | None = None
    name: ClassVar[str] = "add_prefix"

    def __post_init__(self) -> None:
        need_str(self.prefix, "add prefix")
        if self.only is not None:
            compile_regex(self.only, "add prefix (only)")

    def apply(self, tensors: Tensors) -> Tensors:
        if self.only is None:
            return _rename(tensors, lambda k: self.prefix + k)
        rx = re.compile(self.only)
        return _rename(tensors, lambda k: self.prefix + k if rx.search(k) else k)

    def describe(self) -> str:
        where = f" to keys matching {quote(self.only)}" if self.only is not None else ""
        return f"add prefix {quote(self.prefix)}{where}"


@dataclass(frozen=True)
class RegexRename(Op):
    """``re.sub(pattern, replacement, key, count)``: back-references ``\\1``, ``\\g<name>``."""

    pattern: str
    replacement: str
    count: int = 0
    name: ClassVar[str] = "regex_rename"

    def __post_init__(self) -> None:
        rx = rename_regex(self.pattern)
        need_str(self.replacement, "rename: the replacement", empty_ok=True)
        if type(self.count) is not int or self.count < 0:
            raise ReadError(f"rename: count must be an integer >= 0, got {self.count!r}")
        try:
            rx.sub(self.replacement, "")  # checks group references up front
        except (re.error, IndexError) as err:
            raise ReadError(f"rename: bad replacement {quote(self.replacement)}: "
                            f"{err}") from None

    def apply(self, tensors: Tensors) -> Tensors:
        rx = re.compile(self.pattern)
        return _rename(tensors, lambda k: rx.sub(self.replacement, k, count=self.count))

    def describe(self) -> str:
        times = f" (first {self.count})" if self.count else ""
        return f"rename {quote(self.pattern)} -> {quote(self.replacement)}{times}"


@dataclass(frozen=True)
class KeyMap(Op):
    """Explicit renames, applied all at once (so swaps work); absent keys are ignored."""

    mapping: Mapping[str, str]
    name: ClassVar[str] = "key_map"

    def __post_init__(self) -> None:
        if not isinstance(self.mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.mapping.items()):
            raise ReadError(f"rename: key_map must map strings to strings, got {self.mapping!r}")
        object.__setattr__(self, "mapping", MappingProxyType(dict(self.mapping)))

    def apply(self, tensors: Tensors) -> Tensors:
        return _rename(tensors, lambda k: self.mapping.get(k, k))

    def describe(self) -> str:
        if len(self.mapping) == 1:
            (old, new), = self.mapping.items()
            return f"rename {quote(old)} -> {quote(new)}"
        return f"rename {len(self.mapping)} keys explicitly"


@dataclass(frozen=True)
class Drop(Op):
    pattern: str
    kind: str = "glob"
    name: ClassVar[str] = "drop"

    def __post_init__(self) -> None:
        matcher(self.pattern, self.kind, "drop")

    def apply(self, tensors: Tensors) -> Tensors:
        hit = matcher(self.pattern, self.kind)
        return {k: m for k, m in tensors.items() if not hit(k)}

    def describe(self) -> str:
        return f"drop {quote(self.pattern)}" + (" (regex)" if self.kind == "regex" else "")


@dataclass(frozen=True)
class Cast(Op):
    """Set the dtype of matching floating tensors to a floating dtype (CAST_DTYPES).
    Integer and bool buffers (``num_batches_tracked``) keep theirs unless ``pattern``
    names the key exactly."""

    dtype: str
    pattern: str = "*"
    kind: str = "glob"
    name: ClassVar[str] = "cast"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", cast_dtype(self.dtype))
        matcher(self.pattern, self.kind, "cast")

    @property
    def exact_key(self) -> str | None:
        return literal_key(self.pattern, self.kind)

    def apply(self, tensors: Tensors) -> Tensors:
        hit, exact = matcher(self.pattern, self.kind), self.exact_key
        return {k: m._replace(dtype=self.dtype)
                if k == exact or (m.dtype.startswith(_REAL_FLOAT) and hit(k)) else m
                for k, m in tensors.items()}

    def describe(self) -> str:
        which = "all floating tensors" if self.pattern == "*" else quote(self.pattern)
        return f"cast {which} to {self.dtype}"


@dataclass(frozen=True)
class AcceptMissing(Op):
    """The model keys the user accepts to leave uninitialised (a strict=False load)."""

    keys: tuple[str, ...] = ()
    name: ClassVar[str] = "accept_missing"

    def __post_init__(self) -> None:
        if isinstance(self.keys, str) or not all(isinstance(k, str) for k in self.keys):
            raise ReadError(f"accept_missing keys must be a list of strings, got {self.keys!r}")
        object.__setattr__(self, "keys", tuple(self.keys))

    def describe(self) -> str:
        shown = ", ".join(quote(k) for k in self.keys[:3])
        more = f" and {len(self.keys) - 3} more" if len(self.keys) > 3 else ""
        return f"accept {len(self.keys)} missing key(s) uninitialised: {shown}{more}"


# -- the recipe --------------------------------------------------------------------

@dataclass
class Recipe:
    """Ops in order plus what the recipe was made for (informational)."""

    ops: list[Op] = field(default_factory=list)
    version: int = VERSION
    source: str | None = None
    target: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)

    def apply(self, tensors: Mapping[str, TensorMeta]) -> Tensors:
        out = dict(tensors)
        for op in self.ops:
            out = op.apply(out)
        return out

    @property
    def container(self) -> tuple[str, ...] | None:
        return next((op.path for op in self.ops if isinstance(op, SelectContainer)), None)

    @property
    def accepted_missing(self) -> tuple[str, ...]:
        keys = (k for op in self.ops if isinstance(op, AcceptMissing) for k in op.keys)
        return tuple(dict.fromkeys(keys))

    def select(self, ckpt: Checkpoint) -> Tensors:
        """The tensors the recipe starts from: its container, else the reader's pick."""
        found = ckpt.container(self.container)
        if found is not None:
            return found.tensors
        if self.container is None:
            return {}
        have = ", ".join(quote(".".join(c.path) or "(root)") for c in ckpt.containers)
        raise ReadError(f"{ckpt.path}: no container {quote('.'.join(self.container))} "
                        f"(it has: {have or 'none'})")

    def apply_to(self, ckpt: Checkpoint) -> Tensors:
        return self.apply(self.select(ckpt))

    def with_op(self, op: Op) -> Recipe:
        """A new recipe with ``op`` appended; a SelectContainer replaces the current one
        (or goes first), since the container is chosen before any rename runs."""
        ops = list(self.ops)
        if isinstance(op, SelectContainer):
            at = next((i for i, o in enumerate(ops) if isinstance(o, SelectContainer)), None)
            if at is None:
                ops.insert(0, op)
            else:
                ops[at] = op
        else:
            ops.append(op)
        return self.copy(ops=ops)

    def copy(self, ops: Iterable[Op] | None = None) -> Recipe:
        return dataclasses.replace(self, ops=list(self.ops if ops is None else ops),
                                   model_args=dict(self.model_args))

    @property
    def needs_version(self) -> int:
        """The lowest recipe version that holds these ops (1 without value ops)."""
        return 2 if any(op.changes_values for op in self.ops) else 1

    def to_json(self) -> dict[str, Any]:
        return {"pttui_recipe": self.needs_version, "source": self.source, "target": self.target,
                "model_args": dict(self.model_args), "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: Any) -> Recipe:
        if not isinstance(data, dict) or "pttui_recipe" not in data:
            raise ReadError("not a pttui recipe (no `pttui_recipe` field)")
        version = data["pttui_recipe"]
        if version not in VERSIONS:
            raise ReadError(f"recipe version {version!r} is not supported (this pttui reads "
                            f"versions {', '.join(map(str, VERSIONS))}); upgrade pttui")
        ops, args = data.get("ops", []), data.get("model_args") or {}
        if not isinstance(ops, list) or not isinstance(args, dict):
            raise ReadError("recipe: `ops` must be a list and `model_args` an object")
        info = {k: data.get(k) for k in ("source", "target")}
        if not all(v is None or isinstance(v, str) for v in info.values()):
            raise ReadError("recipe: `source` and `target` must be strings or null")
        return cls([op_from_json(o) for o in ops], VERSION, model_args=dict(args), **info)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, through a locked partial file beside ``path`` (an ordinary
        0644-style file in the end; a killed write leaves what the next export sweeps)."""
        from pttui.core.base import partials

        path = os.fspath(path)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        tmp = fd = None
        try:
            fd, tmp = partials.create(*os.path.split(os.path.abspath(path)))
            partials.make_ordinary(fd)
            with os.fdopen(os.dup(fd), "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            partials.publish(tmp, path, replace=True)
            tmp = None
        except OSError as err:
            raise ReadError(f"cannot write recipe {path}: {err.strerror or err}") from None
        finally:
            partials.discard(tmp, fd)  # tmp is None once published

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise ReadError(f"{path}: no such recipe file") from None
        except json.JSONDecodeError as err:
            raise ReadError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ReadError(f"{path}: cannot read recipe: "
                            f"{getattr(err, 'strerror', None) or err}") from None
        try:
            return cls.from_json(data)
        except ReadError as err:
            raise ReadError(f"{path}: {err}") from None
