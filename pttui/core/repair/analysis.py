"""Everything a front shows about one session state, computed in one call.

Pure: it reads a checkpoint's metadata, a recipe and a target and returns plain
data, so the TUI can run it in a worker thread and drop a stale result when the
user has moved on. Nothing here touches the Session or any widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pttui.core.compare.compare import UNKNOWN, Report, compare
from pttui.core.read.keyfilter import KeyIndex, build_index
from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta
from pttui.core.recipe.recipe import Recipe


@dataclass
class Analysis:
    """The key map after the recipe, its index, and (with a target) the verdict."""

    current: dict[str, TensorMeta]
    index: KeyIndex
    report: Report | None = None
    diagnosis: list[str] = field(default_factory=list)
    suggestions: list[Any] = field(default_factory=list)
    error: str | None = None  # the recipe cannot run on this source (conflict, container)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.current.values())


def analyse(source: Checkpoint, recipe: Recipe, target: Any = None,
            with_suggestions: bool = True, ckpt_metadata: Any = UNKNOWN) -> Analysis:
    """The recipe applied to ``source``; with a target, compare, diagnose and suggest.
    ``ckpt_metadata`` is passed to ``compare`` (see there: BatchNorm counters)."""
    try:
        current = recipe.apply_to(source)
    except ReadError as err:
        return Analysis({}, build_index({}), error=str(err))
    if target is None:
        return Analysis(current, build_index(current))
    from pttui.core.repair.diagnose.diagnosis import diagnose
    from pttui.core.repair.suggest.pipeline import suggest

    accepted = recipe.accepted_missing
    report = compare(current, target, accepted_missing=accepted, ckpt_metadata=ckpt_metadata)
    diagnosis = diagnose(current, target, report, source.containers)
    suggestions = suggest(current, target, accepted, metadata=ckpt_metadata,
                          containers=source.containers) if with_suggestions else []
    return Analysis(current, build_index(current, report, target), report, diagnosis,
                    suggestions)
