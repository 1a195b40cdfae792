"""The guided fix-up: the next step to propose, in the order problems are best fixed.

Order: container, weights that are not for this model at all (then nothing else is
offered), unsafe globals, device mapping, a different model variant, the
model built with the checkpoint's class count, then the ranked suggestions
(prefixes, renames, shape mismatches, leftovers), and last an explicit strict=False
acknowledgement of the model keys that stay uninitialised: a step of its own, never
folded into the step that drops keys.
Each step carries its ops and its measured effect (reports before and after), so a
front only shows it and applies ``ops`` to the Session. Pure: no Session, no UI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pttui.core.base.meta import Checkpoint, ReadError
from pttui.core.compare.strict import Report
from pttui.core.repair.analysis import analyse, class_count_step, report_for
from pttui.core.repair.rebuild import head_classes
from pttui.core.recipe.op import Op, RecipeConflict
from pttui.core.recipe.recipe import (AcceptMissing, Drop, Recipe, RegexRename, SelectContainer,
                                      StripPrefix)

STAGES = ("container", "model", "globals", "device", "variant", "classes", "prefix", "rename",
          "values", "shape", "leftover", "accept", "stuck", "done")
_KIND_STAGE = {"prefix": "prefix", "rename": "rename", "structural": "rename", "value": "values",
               "head": "shape",
               "drop": "leftover", "benign": "leftover", "accept": "accept", "tied": "leftover"}


@dataclass
class Step:
    """One proposal. ``ops`` empty: a step to read and acknowledge (nothing changes)."""

    stage: str
    title: str
    why: str
    ops: list[Op] = field(default_factory=list)
    before: Report | None = None
    after: Report | None = None
    affected: list[tuple[str, str]] = field(default_factory=list)  # (old, new or "")
    uninitialised: list[str] = field(default_factory=list)  # keys left at the model's init
    ident: str = ""  # what "skip" remembers
    target: Any = None  # the model to switch to (a step that rebuilds it with other args)
    leaves_missing: list[str] = field(default_factory=list)  # model keys this step empties

    @property
    def editable(self) -> str | None:
        """``rename`` or ``drop`` when the step is one op a user can edit as a regex."""
        if len(self.ops) == 1 and isinstance(self.ops[0], (RegexRename, StripPrefix)):
            return "rename"
        if len(self.ops) == 1 and isinstance(self.ops[0], Drop):
            return "drop"
        return None

    @property
    def number(self) -> int:
        return STAGES.index(self.stage) + 1


def as_regex(op: Op) -> tuple[str, str]:
    """A rename op as (pattern, replacement), for editing."""
    if isinstance(op, StripPrefix):
        return "^" + re.escape(op.prefix), ""
    if isinstance(op, RegexRename):
        return op.pattern, op.replacement
    if isinstance(op, Drop):
        return (op.pattern if op.kind == "regex" else _glob_regex(op.pattern)), ""
    raise TypeError(f"{type(op).__name__} is not a rename")


def rename_seed(row: Any) -> tuple[str, str]:
    """A rename regex and replacement to start editing from, for a key or a group (a
    ``keyfilter.Row``): the pattern takes the group's dot with it, so an empty
    replacement removes the prefix (``^_orig_mod\\.`` -> ``features.0.weight``), and
    the replacement puts it back as it was (``_orig_mod.``), ready to be edited."""
    path = row.paths[0] if row.paths else row.key
    if row.is_leaf:
        return "^" + re.escape(path) + "$", path
    return "^" + re.escape(path) + r"\.", path + "."


def format_advice(ckpt: Checkpoint) -> str | None:
    """What applies to a file that is not a pickled checkpoint (TorchScript, DCP): its
    classes are not globals to allow-list, and torch.load is not the loader."""
    if ckpt.format == "torchscript":
        return ("a TorchScript archive (torch.jit.save): torch.load refuses it and "
                "allow-listing does not apply (its `__torch__` classes are compiled code); "
                "torch.jit.load(path, map_location='cpu') loads it, and .state_dict() gives "
                "the weights")
    if ckpt.format == "dcp":
        return ("a torch.distributed.checkpoint folder: torch.load does not read it and "
                "allow-listing does not apply (its classes are DCP's own metadata); load it "
                "with torch.distributed.checkpoint.load into a model's state_dict, or "
                "convert it with torch.distributed.checkpoint.format_utils.dcp_to_torch_save")
    return None


def _glob_regex(glob: str) -> str:
    import fnmatch

    return fnmatch.translate(glob)


def next_step(source: Checkpoint, recipe: Recipe, target: Any, seen: set[str]) -> Step:
    """The first step not yet accepted or skipped (``seen`` holds their idents). The
    state is read by ``analyse``, as every other front reads it."""
    a = analyse(source, recipe, target)
    if a.error is not None:
        raise ReadError(a.error)
    current, report = a.current, a.report
    step = _container(source, recipe, target, current, report)
    if step is not None and step.ident not in seen:
        return step
    if a.wrong_model:  # nothing else helps: the one thing to offer is another model
        return Step("model", "these weights are not for this model",
                    "Every rename, drop or strict=False step would be noise here: choose "
                    "the model they were trained for.", before=report, after=report,
                    ident="model")
    for make in (_globals, _device, _variant, _classes):
        step = make(source, recipe, target, current, report)
        if step is not None and step.ident not in seen:
            return step
    if a.variant_dropped and "variant-dropped" not in seen:
        return Step("variant", "this is a different variant of the model",
                    f"{a.variant_dropped}. Continue only if you know better.",
                    before=report, after=report, ident="variant-dropped")
    step = _suggested(source, recipe, target, a.suggestions or [], seen)
    if step is not None:
        return step
    return _finish(source, recipe, target, report, seen)


def _container(source, recipe, target, current, report) -> Step | None:
    if len(source.containers) < 2 or recipe.container is not None:
        return None
    from pttui.core.repair.diagnose.diagnosis import best_container

    path, _ = best_container(source, target)
    chosen = tuple(path)
    if chosen == tuple(source.selected or ()):
        return None
    op = SelectContainer(chosen)
    try:
        after = report_for(source, recipe.with_op(op), target)
    except RecipeConflict:
        return None
    name = ".".join(chosen) or "(root)"
    kinds = ", ".join(f"{'.'.join(c.path) or '(root)'} ({len(c.tensors)} tensors, {c.kind})"
                      for c in source.containers)
    return Step("container", f"use container `{name}`",
                f"the file holds several candidate state_dicts: {kinds}; `{name}` fits the "
                "model best", [op], report, after, ident="container")


def _globals(source, recipe, target, current, report) -> Step | None:
    g = source.globals
    if not g.dangerous and not g.blocked:
        return None
    advice = format_advice(source)
    if advice is not None and not g.dangerous:
        return Step("globals", f"the file is {advice.split(':')[0]}",
                    f"{advice}. pttui read the weights without running anything; the "
                    "exported file holds only tensors and loads with torch.load("
                    "weights_only=True). Nothing to apply: continue.", ident="globals")
    names = ", ".join((g.dangerous + g.blocked)[:8])
    danger = (" pttui cannot vouch for " + ", ".join(g.dangerous[:4])
              + ("..." if len(g.dangerous) > 4 else "")
              + ": a full load would run their code." if g.dangerous else "")
    return Step("globals", "the file references Python objects torch will not load",
                f"globals: {names}.{danger} pttui read the weights without running any of "
                "them; the exported file holds only tensors and loads with "
                "weights_only=True. Nothing to apply: continue.", ident="globals")


def _device(source, recipe, target, current, report) -> Step | None:
    devs = sorted({t.device for t in current.values() if t.device.startswith("cuda")})
    if not devs:
        return None
    return Step("device", f"tensors were saved on {', '.join(devs)}",
                "loading this file on a machine without that GPU needs map_location; the "
                "exported file stores CPU tensors, which load anywhere. Nothing to apply: "
                "continue.", ident="device")


def _variant(source, recipe, target, current, report) -> Step | None:
    from pttui.core.repair.diagnose.diagnosis import diagnose, variant_mismatch

    if report.strict_ok or not variant_mismatch(report, current, target):
        return None
    why = next((d for d in diagnose(current, target, report) if "variant" in d),
               "layer shapes or block counts differ")
    return Step("variant", "this looks like a different variant of the model",
                f"{why}. Renaming or dropping keys will not make it fit: choose the matching "
                "model (m). Continue only if you know better.", before=report, after=report,
                ident="variant")


def _classes(source, recipe, target, current, report) -> Step | None:
    """The checkpoint was trained for another class count: build the model with it (the
    same measured step the suggestions list, worded as a wizard step)."""
    found = class_count_step(source, recipe, target, report)
    if found is None:
        return None
    have, want = head_classes(report)
    after, args = found.after, found.args
    where = ", ".join(m.key for m in report.shape_mismatch[:4])
    shown = " ".join(f"{k}={v!r}" for k, v in args.items())
    fit = ("every key of the file then matches: nothing is dropped or left uninitialised"
           if after.strict_ok else "the classifier then matches too")
    return Step("classes", found.title,
                f"only the classifier differs: the checkpoint has {have} classes, the model "
                f"{want} ({where}). Built with {shown}, {target.spec} takes the trained "
                f"head as it is; {fit}. Skip this to keep the {want}-class model and "
                "replace the head instead.",
                before=report, after=after, target=found.target, ident=f"classes:{have}")


def _suggested(source: Checkpoint, recipe: Recipe, target, suggestions: list,
               seen: set[str]) -> Step | None:
    for s in suggestions:
        ident = "s:" + s.title
        if ident in seen or s.kind == "model":  # the model step is the wizard's own
            continue
        stage = _KIND_STAGE.get(s.kind, "rename")
        uninit = [] if s.kind == "tied" else [  # a tied alias loads through its twin
            k for op in s.ops if isinstance(op, AcceptMissing) for k in op.keys]
        why = s.why + (f" [{s.confidence} confidence]" if s.confidence != "high" else "")
        ops = [op for op in s.ops if not isinstance(op, AcceptMissing)]
        if ops and uninit:
            # Dropping keys and accepting the model keys it empties are two answers: this
            # step drops; the strict=False acknowledgement comes next, as its own step.
            after = report_for(source, recipe.copy(ops=[*recipe.ops, *ops]), target)
            why += (f". Afterwards {len(uninit)} model key{'s are' if len(uninit) != 1 else ' is'}"
                    " missing; the next step asks you to accept "
                    f"{'them' if len(uninit) != 1 else 'it'} (strict=False)")
            return Step(stage, s.title, why, ops, s.before, after, s.affected, [], ident,
                        leaves_missing=uninit)
        title = s.title
        if not ops and s.kind != "tied":  # only an acceptance: the strict=False ack
            stage, title, why = "accept", _ack_title(len(uninit)), _ACK_WHY
            # two suggestions (the missing head; all missing keys) can ask the same thing:
            # once skipped, the acknowledgement of these keys is not asked again
            ident = "ack:" + ",".join(sorted(uninit))
            if ident in seen:
                continue
        affected = _value_changes(source, recipe, ops) if s.kind == "value" else s.affected
        return Step(stage, title, why, list(s.ops), s.before, s.after, affected, uninit,
                    ident)
    return None


def _value_changes(source: Checkpoint, recipe: Recipe, ops: list[Op]
                   ) -> list[tuple[str, str]]:
    """``key [shape]`` -> ``key [shape]`` for every tensor a value step computes anew:
    the preview of what happens to shapes (the step's title says what to values)."""
    from pttui.core.base.meta import Derived

    before = recipe.apply_to(source)
    after = recipe.copy(ops=[*recipe.ops, *ops]).apply_to(source)
    by_source = {m.key: k for k, m in before.items()}
    out = []
    for key, meta in after.items():
        if isinstance(meta, Derived) and before.get(key) != meta:
            inputs = [by_source.get(i.key, i.key) for i in meta.derive.leaves()]
            was = " + ".join(f"{k} {list(before[k].shape)}" for k in inputs if k in before)
            out.append((was or key, f"{key} {list(meta.shape)} ({meta.derive.fn})"))
    return out


def _ack_title(n: int) -> str:
    return f"strict=False: leave {n} model key{'s' if n != 1 else ''} uninitialised"


_ACK_WHY = ("No step can fill them from this file. Loading with "
            "model.load_state_dict(state_dict, strict=False) leaves exactly these keys at "
            "the model's initialisation (train them, or fill them yourself); acknowledge "
            "that to finish.")


def _finish(source, recipe, target, report: Report, seen: set[str]) -> Step:
    if report.ok_with_accepted:
        tied = set(report.tied_missing)  # they load through their twin: not left behind
        left = [k for k in report.accepted_missing if k not in tied]
        if not left and tied:
            return Step("done", "ready: the checkpoint loads with strict=False",
                        "load_state_dict(strict=False) succeeds; the missing tied "
                        "alias(es) take their twin's weights, so nothing stays at the "
                        "model's initialisation.", before=report, after=report, ident="done")
        if not left:
            return Step("done", "the checkpoint fits the model",
                        "load_state_dict(strict=True) will succeed.", before=report,
                        after=report, ident="done")
        return Step("done", "ready: the checkpoint loads with strict=False",
                    f"load_state_dict(strict=False) succeeds; the {len(left)} model "
                    f"key{'s' if len(left) != 1 else ''} you accepted stay at the model's "
                    "initialisation.", before=report, after=report, uninitialised=left,
                    ident="done")
    leftover = [k for k in report.missing if k not in set(report.accepted_missing)]
    ack = "ack:" + ",".join(sorted(leftover))  # the same question as a suggested ack
    if leftover and not report.unexpected and not report.shape_mismatch \
            and ack not in seen:
        op = AcceptMissing(tuple(leftover))
        after = report_for(source, recipe.with_op(op), target)
        return Step("accept", _ack_title(len(leftover)), _ACK_WHY, [op], report, after,
                    uninitialised=leftover, ident=ack)
    parts = [f"{len(report.missing)} missing" if report.missing else "",
             f"{len(report.unexpected)} unexpected" if report.unexpected else "",
             f"{len(report.shape_mismatch)} shape mismatches" if report.shape_mismatch else ""]
    return Step("stuck", "no automatic step left",
                f"still {', '.join(p for p in parts if p)}. Rename (r), drop (d) or accept "
                "missing keys (a) by hand, or choose another model (m).", before=report,
                after=report, ident="stuck")


def diagnosis(source: Checkpoint, recipe: Recipe, target: Any) -> list[str]:
    """Why the file does not fit yet, in words (the wizard shows it before the first step)."""
    a = analyse(source, recipe, target, with_suggestions=False)
    return [] if a.report is None or a.report.strict_ok else a.diagnosis


def preview_op(source: Checkpoint, recipe: Recipe, target: Any, op: Op
               ) -> tuple[list[tuple[str, str]], Report | None, Report | None]:
    """What ``op`` would do now: (old, new) keys it changes, reports before and after.
    Raises ReadError (RecipeConflict) when it cannot apply."""
    before_map = recipe.apply_to(source)
    after_map = op.apply(before_map)
    new_by_source = {m.key: k for k, m in after_map.items()}
    changed = [(old, new_by_source.get(m.key, "")) for old, m in before_map.items()
               if new_by_source.get(m.key, "") != old]
    if target is None:
        return changed, None, None
    return (changed, report_for(source, recipe, target),
            report_for(source, recipe.with_op(op), target))
