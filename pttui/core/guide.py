"""The guided fix-up: the next step to propose, in the order problems are best fixed.

Order: container, unsafe globals, device mapping, a different model variant, then
the ranked suggestions (prefixes, renames, shape mismatches, leftovers), and last
an explicit strict=False acknowledgement of the model keys that stay uninitialised.
Each step carries its ops and its measured effect (reports before and after), so a
front only shows it and applies ``ops`` to the Session. Pure: no Session, no UI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pttui.core.compare import Report, compare
from pttui.core.meta import Checkpoint, TensorMeta
from pttui.core.recipe import (AcceptMissing, Drop, Op, Recipe, RecipeConflict, RegexRename,
                               SelectContainer, StripPrefix)

STAGES = ("container", "globals", "device", "variant", "prefix", "rename", "shape",
          "leftover", "accept", "stuck", "done")
_KIND_STAGE = {"prefix": "prefix", "rename": "rename", "structural": "rename", "head": "shape",
               "drop": "leftover", "benign": "leftover", "accept": "accept"}


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


def _glob_regex(glob: str) -> str:
    import fnmatch

    return fnmatch.translate(glob)


def next_step(source: Checkpoint, recipe: Recipe, target: Any, seen: set[str]) -> Step:
    """The first step not yet accepted or skipped (``seen`` holds their idents)."""
    current = recipe.apply_to(source)
    accepted = recipe.accepted_missing
    report = compare(current, target, accepted_missing=accepted)
    for make in (_container, _globals, _device, _variant):
        step = make(source, recipe, target, current, report)
        if step is not None and step.ident not in seen:
            return step
    step = _suggested(current, target, accepted, report, seen)
    if step is not None:
        return step
    return _finish(current, target, report, seen)


def _container(source, recipe, target, current, report) -> Step | None:
    if len(source.containers) < 2 or recipe.container is not None:
        return None
    from pttui.core.diagnosis import best_container

    path, _ = best_container(source, target)
    chosen = tuple(path)
    if chosen == tuple(source.selected or ()):
        return None
    op = SelectContainer(chosen)
    try:
        after_map = recipe.with_op(op).apply_to(source)
    except RecipeConflict:
        return None
    after = compare(after_map, target, accepted_missing=recipe.accepted_missing)
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
    names = ", ".join((g.dangerous + g.blocked)[:8])
    danger = " Some of them can run code." if g.dangerous else ""
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
    from pttui.core.diagnosis import diagnose, variant_mismatch

    if report.strict_ok or not variant_mismatch(report, current, target):
        return None
    why = next((d for d in diagnose(current, target, report) if "variant" in d),
               "layer shapes or block counts differ")
    return Step("variant", "this looks like a different variant of the model",
                f"{why}. Renaming or dropping keys will not make it fit: choose the matching "
                "model (m). Continue only if you know better.", before=report, after=report,
                ident="variant")


def _suggested(current: dict[str, TensorMeta], target, accepted, report: Report,
               seen: set[str]) -> Step | None:
    from pttui.core.suggest import suggest

    for s in suggest(current, target, accepted):
        ident = "s:" + s.title
        if ident in seen:
            continue
        stage = _KIND_STAGE.get(s.kind, "rename")
        uninit = [k for op in s.ops if isinstance(op, AcceptMissing) for k in op.keys]
        why = s.why + (f" [{s.confidence} confidence]" if s.confidence != "high" else "")
        return Step(stage, s.title, why, list(s.ops), s.before, s.after, s.affected, uninit,
                    ident)
    return None


def _finish(current, target, report: Report, seen: set[str]) -> Step:
    if report.ok_with_accepted:
        left = list(report.accepted_missing)
        why = ("load_state_dict(strict=True) will succeed." if not left else
               f"load_state_dict(strict=False): these {len(left)} model keys stay at the "
               "model's initialisation.")
        return Step("done", "the checkpoint fits the model", why, before=report, after=report,
                    uninitialised=left, ident="done")
    leftover = [k for k in report.missing if k not in set(report.accepted_missing)]
    if leftover and not report.unexpected and not report.shape_mismatch \
            and "accept" not in seen:
        op = AcceptMissing(tuple(leftover))
        after = compare(current, target, accepted_missing=(*report.accepted_missing,
                                                           *leftover))
        return Step("accept", f"accept {len(leftover)} missing keys (strict=False)",
                    "no step can fill them from this file. Loading with strict=False leaves "
                    "exactly these keys at the model's initialisation; acknowledge that to "
                    "finish.", [op], report, after, uninitialised=leftover, ident="accept")
    parts = [f"{len(report.missing)} missing" if report.missing else "",
             f"{len(report.unexpected)} unexpected" if report.unexpected else "",
             f"{len(report.shape_mismatch)} shape mismatches" if report.shape_mismatch else ""]
    return Step("stuck", "no automatic step left",
                f"still {', '.join(p for p in parts if p)}. Rename (r), drop (d) or accept "
                "missing keys (a) by hand, or choose another model (m).", before=report,
                after=report, ident="stuck")


def diagnosis(source: Checkpoint, recipe: Recipe, target: Any) -> list[str]:
    """Why the file does not fit yet, in words (the wizard shows it before the first step)."""
    from pttui.core.diagnosis import diagnose

    current = recipe.apply_to(source)
    report = compare(current, target, accepted_missing=recipe.accepted_missing)
    return [] if report.strict_ok else diagnose(current, target, report, source.containers)


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
    acc = recipe.accepted_missing + (op.keys if isinstance(op, AcceptMissing) else ())
    return (changed, compare(before_map, target, accepted_missing=recipe.accepted_missing),
            compare(after_map, target, accepted_missing=acc))
