"""``fix --auto``: apply the safe suggestions in order, and know when to refuse.

It refuses rather than "fixing" a wrong file: a different model variant, or a
result that would leave more than a tenth of the model uninitialised beyond a
replaced head, or that throws away most of the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pttui.core.compare.strict import Report, is_benign
from pttui.core.repair.analysis import analyse
from pttui.core.repair.diagnose.diagnosis import OPTIMIZER_NOTE, best_container, variant_mismatch
from pttui.core.base.meta import Checkpoint, TensorMeta, source_keys
from pttui.core.recipe.recipe import Recipe, SelectContainer
from pttui.core.read.reader import open_checkpoint
from pttui.core.repair.suggest.pipeline import Suggestion

MAX_UNINITIALISED = 0.10  # of the model's elements, beyond a replaced head
MAX_DROPPED = 0.10  # of the checkpoint's elements, beyond a replaced head and benign keys


@dataclass
class AutoResult:
    ckpt: Checkpoint
    recipe: Recipe
    report: Report
    steps: list[Suggestion] = field(default_factory=list)
    refused: str | None = None
    diagnosis: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.refused is None and self.report.ok_with_accepted


def choose_container(ckpt: Checkpoint, target: Any) -> Checkpoint:
    """Re-select the container that fits the target best (EMA vs model vs optimizer)."""
    if len(ckpt.containers) < 2:
        return ckpt
    path, _report = best_container(ckpt, target)
    if path is not None and tuple(path) != ckpt.selected:
        ckpt.selected = tuple(path)
    return ckpt


def auto_fix(ckpt: Checkpoint, target: Any, max_steps: int = 25, choose: bool = True
             ) -> AutoResult:
    if choose:
        ckpt = choose_container(ckpt, target)
    recipe = Recipe([SelectContainer(tuple(ckpt.selected or ()))], source=ckpt.path,
                    target=getattr(target, "spec", None),
                    model_args=dict(getattr(target, "args", {}) or {}))
    tensors = ckpt.tensors
    first = analyse(ckpt, recipe, target, with_suggestions=False)
    result = AutoResult(ckpt, recipe, first.report, diagnosis=first.diagnosis)
    if result.diagnosis and result.diagnosis[0].startswith(OPTIMIZER_NOTE):
        result.refused = (result.diagnosis[0] + "; loading it would leave the whole model "
                          "uninitialised")
        return result
    if variant_mismatch(first.report, tensors, target):
        result.refused = ("the checkpoint is a different variant of the model (layer shapes "
                          "or block counts differ); renaming or dropping keys will not fix "
                          "it — use the matching model")
        return result
    head_keys: set[str] = set()
    review: list[Suggestion] = []  # the renames left for a person to check, at the end
    for _ in range(max_steps):
        offered = analyse(ckpt, recipe, target).suggestions or []  # as `check` offers them
        found = [s for s in offered if s.safe]
        if not found:
            review = [s for s in offered if s.kind in REVIEW_KINDS]
            break
        step = found[0]
        recipe.ops.extend(step.ops)
        result.steps.append(step)
        head_keys.update(step.head_keys)  # a replaced or missing output layer
    last = analyse(ckpt, recipe, target, with_suggestions=False)
    final, result.report = last.current, last.report
    result.refused = _refusal(tensors, final, target, result.report, head_keys, review)
    return result


REVIEW_KINDS = ("prefix", "rename", "structural")  # steps that rename keys


def review_note(review: list[Suggestion]) -> str:
    """Why renames were found but not applied: they need a person's review."""
    keys = {old for s in review for old, _new in s.affected} or None
    n = len(review)
    counted = f"{n} rename{'s' if n != 1 else ''}"
    if keys:
        counted += f" ({len(keys)} key{'s' if len(keys) != 1 else ''})"
    by_shape = all("same-shaped" in s.why for s in review)
    why = ("the pairs are ambiguous by shape: several keys share one shape, so pttui will "
           "not guess which is which" if by_shape else "they are low-confidence")
    return (f"found {counted}, but {'they need' if n != 1 else 'it needs'} review ({why}); "
            "`pttui check` lists them — apply the right ones with a recipe "
            "(see docs/recipes.md)")


def _refusal(before: dict[str, TensorMeta], after: dict[str, TensorMeta], target: Any,
             report: Report, head_keys: set[str], review: list[Suggestion] | None = None
             ) -> str | None:
    """Why the result must not be written, or None. Tied aliases loading through their
    twin count as loaded (compare covers them); a replaced head is allowed."""
    expected = target.tensors
    total = report.elements_total or 1
    head = sum(expected[k].numel for k in head_keys if k in expected and k not in target.tied)
    uninit = max(0, report.elements_total - report.elements_ok - head)
    if uninit / total > MAX_UNINITIALISED:
        lost = [k for k in report.missing if k not in head_keys and k not in
                set(report.tied_missing)] + [m.key for m in report.shape_mismatch]
        if review:
            return (f"{uninit / total:.0%} of the model's elements would stay uninitialised "
                    f"({len(lost)} keys): {review_note(review)}")
        return (f"{uninit / total:.0%} of the model's elements would stay uninitialised "
                f"beyond a replaced head ({len(lost)} keys); this checkpoint does not hold "
                "this model's weights — check the model spec or the container")
    kept_sources = source_keys(after.values())
    nonp = target.non_persistent
    dropped = sum(t.numel for k, t in before.items()
                  if t.key not in kept_sources and k not in head_keys
                  and not (k in nonp or is_benign(k, t)))
    have = sum(t.numel for t in before.values()) or 1
    if dropped / have > MAX_DROPPED:
        return (f"it would drop {dropped / have:.0%} of the checkpoint's elements; refusing "
                "to fix a wrong file by throwing most of it away")
    if not report.ok_with_accepted:
        left = (f"no safe step left, and the model still would not load: "
                f"{len(report.missing)} missing, {len(report.unexpected)} unexpected, "
                f"{len(report.shape_mismatch)} shape mismatches; ")
        if review:
            return left + review_note(review)
        return left + "write a recipe by hand (see docs/recipes.md)"
    return None


def reopen(ckpt: Checkpoint, recipe: Recipe) -> Checkpoint:
    """The checkpoint with the recipe's container selected."""
    want = recipe.container
    if want is None or tuple(want) == ckpt.selected:
        return ckpt
    return open_checkpoint(ckpt.path, select=tuple(want))



