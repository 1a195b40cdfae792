"""What every recipe step is: an ``Op`` on a key -> TensorMeta map, registered by its
JSON tag, and the one rule of renaming (two tensors never get one name).

The name ops live in ``recipe.py``, the value and shape ops in ``valueops.py``; both
register here, and ``recipe.op_from_json`` reads either."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pttui.core.base.meta import ReadError, TensorMeta
from pttui.core.recipe.args import quote

Tensors = dict[str, TensorMeta]


class RecipeConflict(ReadError):
    """A rename would give two tensors one name; pttui never overwrites silently."""


def _rename(tensors: Mapping[str, TensorMeta], new_name: Callable[[str], str]) -> Tensors:
    """Rename every key; two keys landing on one name is a RecipeConflict naming both."""
    out: Tensors = {}
    for key, meta in tensors.items():
        new = new_name(key)
        if new in out:
            first = next(k for k in tensors if new_name(k) == new)
            raise RecipeConflict(f"{quote(first)} and {quote(key)} would both become "
                                 f"{quote(new)}; drop or rename one of them first")
        out[new] = meta
    return out


# -- ops ---------------------------------------------------------------------------

OPS: dict[str, type[Op]] = {}


@dataclass(frozen=True)
class Op:
    """One recipe step. Subclasses set ``name`` (the JSON ``op`` tag) and are registered."""

    name: ClassVar[str] = ""
    changes_values: ClassVar[bool] = False  # a value op: recipe version 2, no raw copy

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            OPS[cls.name] = cls

    def apply(self, tensors: Tensors) -> Tensors:
        return dict(tensors)

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (list(value) if isinstance(value, tuple)
                           else dict(value) if isinstance(value, Mapping) else value)
        return out
