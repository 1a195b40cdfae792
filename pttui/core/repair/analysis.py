"""Everything a front shows about one state (file, recipe, model), computed in one call.

The CLI's ``check``, the shell's ``check``/``suggest``, the TUI's Report and the
wizard all call ``analyse``: the same state gets the same counts and the same advice
everywhere. Pure: it reads a checkpoint's metadata, a recipe and a target and returns
plain data, so a front can run it in a worker thread and drop a stale result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta
from pttui.core.compare.strict import Report, compare
from pttui.core.read.keyfilter import KeyIndex, build_index
from pttui.core.recipe.modmeta import metadata_for
from pttui.core.recipe.recipe import Recipe


@dataclass
class Analysis:
    """The key map after the recipe, its index, and (with a target) the verdict."""

    current: dict[str, TensorMeta]
    index: KeyIndex
    report: Report | None = None
    diagnosis: list[str] = field(default_factory=list)
    suggestions: list[Any] | None = None  # None: not computed (with_suggestions=False)
    error: str | None = None  # the recipe cannot run on this source (conflict, container)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.current.values())


def analyse(source: Checkpoint | None, recipe: Recipe, target: Any = None,
            with_suggestions: bool = True) -> Analysis:
    """The recipe applied to ``source``; with a target, compare, diagnose and suggest.
    Suggestions are the costly part (each is measured): a caller that shows only the
    verdict asks for none. No source: an empty analysis."""
    if source is None:
        return Analysis({}, build_index({}), suggestions=[])
    try:
        current = recipe.apply_to(source)
    except ReadError as err:
        return Analysis({}, build_index({}), error=str(err))
    if target is None:
        return Analysis(current, build_index(current), suggestions=[])
    from pttui.core.repair.diagnose.diagnosis import diagnose
    from pttui.core.repair.suggest.pipeline import suggest

    accepted, meta = recipe.accepted_missing, metadata_for(source, recipe)
    report = compare(current, target, accepted_missing=accepted, ckpt_metadata=meta)
    diagnosis = diagnose(current, target, report, source.containers)
    suggestions = suggest(current, target, accepted, metadata=meta,
                          containers=source.containers) if with_suggestions else None
    return Analysis(current, build_index(current, report, target), report, diagnosis,
                    suggestions)


def report_for(source: Checkpoint, recipe: Recipe, target: Any) -> Report:
    """Only the verdict of ``analyse`` (what a step's preview measures "after"); raises
    ReadError when the recipe cannot run on ``source``."""
    return compare(recipe.apply_to(source), target, accepted_missing=recipe.accepted_missing,
                   ckpt_metadata=metadata_for(source, recipe))
