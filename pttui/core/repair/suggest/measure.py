"""A repair step and its measurement: apply the ops, compare, keep it if it helps.

Split from suggest.py: ``Suggestion`` is what every step finder returns, and ``_Ctx``
is the one place that decides whether a candidate raises coverage (renames) or keeps
it while removing a problem (clean-ups).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pttui.core.compare.strict import UNKNOWN, Report, compare
from pttui.core.base.meta import TensorMeta
from pttui.core.recipe.modmeta import carry_metadata
from pttui.core.recipe.recipe import AcceptMissing, Recipe
from pttui.core.recipe.op import Op, RecipeConflict
from pttui.core.repair.suggest.apply import _affected, apply_op

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

_RAISES = ("prefix", "rename", "structural", "value")  # kinds that must raise coverage


@dataclass
class Suggestion:
    """One step: the ops it adds, what it does, and its measured effect."""

    ops: list[Op]
    title: str
    before: Report
    after: Report
    confidence: str  # high | medium | low
    safe: bool  # applied by `fix --auto`
    why: str = ""
    # prefix | rename | structural | value | head | tied | benign | drop | accept
    kind: str = "rename"
    affected: list[tuple[str, str]] = field(default_factory=list)  # (old, new or "")
    # model keys of the output layer this step leaves to train anew (a replaced or
    # missing head): ``fix --auto`` does not count them as "uninitialised"
    head_keys: list[str] = field(default_factory=list)
    # kind "model": no ops; the model built with other arguments (``args``) fits better
    target: Any = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def effect(self) -> str:
        (b, total), (a, _) = self.before.coverage_keys, self.after.coverage_keys
        return f"{b}/{total} -> {a}/{total} keys"

    def to_json(self) -> dict:
        return {"title": self.title, "ops": [op.to_json() for op in self.ops],
                "effect": self.effect, "confidence": self.confidence, "safe": self.safe,
                "why": self.why, "kind": self.kind,
                "coverage_keys": [list(self.before.coverage_keys), list(self.after.coverage_keys)],
                "coverage_params": [list(self.before.coverage_params),
                                    list(self.after.coverage_params)],
                **({"model_args": self.args} if self.kind == "model" else {})}


def _score(r: Report) -> tuple[int, int]:
    return (r.coverage_params[0], r.coverage_keys[0])


def problems(r: Report) -> int:
    return len(r.missing) + len(r.unexpected) + len(r.shape_mismatch) - len(
        set(r.missing) & set(r.accepted_missing))


class _Ctx:
    """One suggest() run: the base comparison and the steps measured so far."""

    def __init__(self, tensors, target, base: Report, accepted, metadata) -> None:
        self.tensors, self.target, self.base = tensors, target, base
        self.accepted, self.metadata = tuple(accepted), metadata
        self.found: list[Suggestion] = []
        self.containers: list = []
        self.seen: set[str] = set()
        self._unexpected: set[str] | None = None

    @property
    def unexpected(self) -> set[str]:
        if self._unexpected is None:
            self._unexpected = set(self.base.unexpected)
        return self._unexpected

    def measure(self, ops: list[Op], title: str, confidence: str, safe: bool, why: str,
                kind: str, after_map: dict[str, TensorMeta] | None = None,
                check=None, affected: list[tuple[str, str]] | None = None,
                head_keys: list[str] | None = None) -> Suggestion | None:
        """Apply ``ops`` (``after_map``: their result, when already known), compare, and
        keep the step if it helps. ``check(affected, after)`` may veto ``safe``."""
        if title in self.seen:
            return None
        self.seen.add(title)
        tensors, base = self.tensors, self.base
        try:
            if after_map is None:
                after_map = tensors
                for op in ops:
                    after_map = apply_op(op, after_map)
        except RecipeConflict:
            return None
        acc = self.accepted + tuple(k for op in ops if isinstance(op, AcceptMissing)
                                    for k in op.keys)
        meta = self.metadata if self.metadata is UNKNOWN else carry_metadata(
            self.metadata, Recipe(list(ops)))
        after = compare(after_map, self.target, accepted_missing=acc, ckpt_metadata=meta)
        (bp, bk), (ap, ak) = _score(base), _score(after)
        if ap < bp or ak < bk:
            return None  # a suggestion never lowers coverage
        if kind in _RAISES:
            if (ap, ak) == (bp, bk):
                return None
        elif (ap, ak) == (bp, bk) and problems(after) >= problems(base):
            return None
        if affected is None:
            affected = _affected(tensors, after_map)
        if safe and check is not None and not check(affected, after):
            safe, confidence = False, "low"
        step = Suggestion(ops, title, base, after, confidence, safe, why, kind, affected,
                          list(head_keys or ()))
        self.found.append(step)
        return step
