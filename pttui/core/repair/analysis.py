"""Everything a front shows about one state (file, recipe, model), computed in one call.

The CLI's ``check``, the shell's ``check``/``suggest``, the TUI's Report and the
wizard all call ``analyse``: the same state gets the same counts and the same advice
everywhere. Pure: it reads a checkpoint's metadata, a recipe and a target and returns
plain data, so a front can run it in a worker thread and drop a stale result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta, source_keys
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
    wrong_model: str | None = None  # the weights are not for this model: why, in words
    file_use: tuple[int, int] = (0, 0)  # (file elements that load into the model, all)
    dropped: int = 0  # the file's keys the recipe drops
    variant_dropped: str | None = None  # a wrong variant made to fit by dropping keys

    def file_json(self) -> dict[str, Any]:
        """The file's side, for ``check --json``: what it uses of the file, what the
        recipe drops, and whether the weights are for this model at all."""
        used, total = self.file_use
        return {"file_use": {"elements": used, "total": total, "dropped_keys": self.dropped},
                "wrong_model": self.wrong_model}

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

    from pttui.core.repair.diagnose import fit

    accepted, meta = recipe.accepted_missing, metadata_for(source, recipe)
    report = compare(current, target, accepted_missing=accepted, ckpt_metadata=meta)
    diagnosis = diagnose(current, target, report, source.containers)
    suggestions = suggest(current, target, accepted, metadata=meta,
                          containers=source.containers) if with_suggestions else None
    if suggestions is not None:
        rebuilt = class_count_step(source, recipe, target, report)
        if rebuilt is not None:
            suggestions = [rebuilt] + suggestions
    best = max((s.after.coverage_params[0] for s in suggestions or [] if s.after is not None),
               default=0)
    wrong = fit.not_for_model(current, target, report, best)
    if wrong is not None:  # say that first, and offer nothing a rename could not help
        diagnosis = [wrong]
        suggestions = [] if suggestions is not None else None
    base = recipe.select(source)
    read = source_keys(current.values())  # stored tensors the result still reads
    dropped = sum(1 for m in base.values() if m.key not in read)
    use = fit.file_use(base, report)
    kept = _dropped_variant(base, target, use, dropped) if dropped and wrong is None \
        else None
    if kept:
        diagnosis = [kept] + diagnosis
    return Analysis(current, build_index(current, report, target), report, diagnosis,
                    suggestions, wrong_model=wrong, file_use=use,
                    dropped=dropped, variant_dropped=kept)


def class_count_step(source: Checkpoint, recipe: Recipe, target: Any, report: Report):
    """The model built with the file's class count, as a suggestion the Report, the
    shell and ``check`` list (the diagnosis says "build the model with num_classes=N";
    the suggestions offer it). Not safe for ``fix --auto``: it changes the model."""
    from pttui.core.repair.rebuild import head_classes, rebuild
    from pttui.core.repair.suggest.measure import Suggestion

    classes = head_classes(report)
    if classes is None or getattr(target, "kind", "model") != "model" or not target.spec:
        return None
    have, want = classes
    args = {**dict(target.args or {}), "num_classes": have}
    rebuilt = rebuild(target.spec, args)
    if rebuilt is None:
        return None
    after = report_for(source, recipe, rebuilt)
    if after.shape_mismatch or after.coverage_keys[0] <= report.coverage_keys[0]:
        return None
    return Suggestion([], f"build the model with num_classes={have}", report, after, "high",
                      False, f"the checkpoint's classifier has {have} classes, the model "
                      f"{want}: built with num_classes={have} it takes the trained head",
                      "model", target=rebuilt, args=args)


def _dropped_variant(base: dict[str, TensorMeta], target: Any, use: tuple[int, int],
                     dropped: int) -> str | None:
    """A wrong variant stays a wrong variant when the keys that show it are dropped by
    hand: said while it holds, with what the drops throw away of the file."""
    from pttui.core.repair.diagnose.diagnosis import variant_mismatch
    from pttui.core.repair.diagnose.variant import variant_reason

    whole = compare(base, target)
    if not variant_mismatch(whole, base, target):
        return None
    reason = variant_reason(whole, target) or "layer shapes or block counts differ"
    used, total = use
    share = f"{used / total:.0%}" if total else "none"
    return (f"the file is another variant of the model ({reason}); the recipe drops "
            f"{dropped:,} of its keys to make it fit, and the result uses only {share} of "
            "the checkpoint's parameters: use the matching model instead")


def report_for(source: Checkpoint, recipe: Recipe, target: Any) -> Report:
    """Only the verdict of ``analyse`` (what a step's preview measures "after"); raises
    ReadError when the recipe cannot run on ``source``."""
    return compare(recipe.apply_to(source), target, accepted_missing=recipe.accepted_missing,
                   ckpt_metadata=metadata_for(source, recipe))
