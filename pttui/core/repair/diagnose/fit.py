"""How much of the *file* a state uses, and whether the weights are for this model at all.

Coverage says how much of the model a file fills; users also need the other side. A
file that fills a model only after most of it was dropped by hand (resnet34 weights
cut down to fit resnet18) is not a repaired checkpoint, and a file that shares
nothing with the model (squeezenet weights against resnet18) is not one renames can
help: every step offered for it would be noise. Both are judged on names and shapes
only, like the rest of the diagnosis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from math import prod

from pttui.core.base.meta import TensorMeta
from pttui.core.compare.strict import Report

LOW = 0.5  # below this share, on both sides, the weights are not for the model
SAME_TOTAL = 0.01  # totals this close: the same parameters, fused, stacked or reshaped


def elements(tensors: Mapping[str, TensorMeta]) -> int:
    return sum(prod(t.shape) for t in tensors.values())


def _signature(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape as renames, transposes and reshapes to or from 1x1 leave it."""
    return tuple(sorted(d for d in shape if d != 1))


def shape_overlap(tensors: Mapping[str, TensorMeta], model: Mapping[str, TensorMeta]) -> int:
    """Elements of the file whose shapes the model also has, pair by pair (a multiset
    meet of shapes, transposes included): the most any renaming could make fit."""
    have = Counter(_signature(tuple(t.shape)) for t in tensors.values())
    want = Counter(_signature(tuple(t.shape)) for t in model.values())
    return sum(prod(sig) * n for sig, n in (have & want).items())


def not_for_model(tensors: Mapping[str, TensorMeta], target, report: Report,
                  best_elements: int | None = None) -> str | None:
    """One line when the weights are not for ``target``: under LOW of the file and of
    the model fits now (or after the best suggested step, ``best_elements``), their
    shapes do not pair up either, and the totals differ (the same parameters fused or
    stacked would keep the total). None otherwise: the diagnosis takes it from there."""
    model = target.tensors
    have, want = elements(tensors), report.elements_total  # the model's, counted already
    if not have or not want or report.strict_ok:
        return None
    fit = max(report.coverage_params[0], best_elements or 0)
    if fit >= LOW * have or fit >= LOW * want:
        return None
    overlap = shape_overlap(tensors, model)
    if overlap >= LOW * have or overlap >= LOW * want:
        return None
    if abs(have - want) <= SAME_TOTAL * max(have, want):
        return None
    name = getattr(target, "label", "") or getattr(target, "spec", "") or "this model"
    now = report.coverage_params[0]
    return (f"these weights are not for {name}: {_pct(now, have)} of the file's parameters "
            f"fit it ({report.keys_ok}/{report.keys_total} model keys), and their shapes do "
            "not pair up, so no rename or drop can help: choose the model they were "
            "trained for")


def _pct(part: int, whole: int) -> str:
    share = part / whole if whole else 0.0
    return "none" if part == 0 else "under 1%" if share < 0.01 else f"{share:.0%}"


def file_use(source_tensors: Mapping[str, TensorMeta], report: Report) -> tuple[int, int]:
    """(elements of the file that load into the model, the file's elements): what a
    state keeps of the checkpoint, the side coverage does not show."""
    total = elements(source_tensors)
    return min(report.coverage_params[0], total), total
