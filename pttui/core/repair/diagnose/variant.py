"""Structure checks on a comparison: is the checkpoint another variant of the model
(deeper, shallower, wider), or do only its head or input layer differ?

Split from diagnosis.py: these work on key names and shapes only and are shared by
``diagnose``, ``variant_mismatch`` (``--auto``) and suggest.py.
"""

from __future__ import annotations

import re

from pttui.core.base import humanize as hz
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pttui.core.compare.strict import Report, ShapeMismatch, group_keys
from pttui.core.repair.diagnose.relations import relation
from pttui.core.target.targets import Target


def _module(key: str) -> str:
    return key.rpartition(".")[0]


# A key up to its last numbered component (``layers.3.mlp.0`` of
# ``layers.3.mlp.0.weight``): one regex pass over the joined keys finds them all, and
# keys of one block share it, so the Python work is per block, not per key.
_STEM = re.compile(r"^((?:.*\.)?[0-9]+)\.", re.M)
_LAST_NUM = re.compile(r"^(?:.*\.)?[0-9]+(?=\.|$)")


def _stems(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    return list(dict.fromkeys(_STEM.findall("\n".join(keys)))) if keys else []


def _index_ranges(keys: Iterable[str]) -> dict[str, int]:
    """``layer3`` -> highest numeric child index seen, for every numbered collection."""
    top: dict[str, int] = {}
    done: set[str] = set()
    for stem in _stems(keys):
        while stem and stem not in done:
            done.add(stem)
            coll, _, idx = stem.rpartition(".")
            n = int(idx)
            if top.get(coll, -1) < n:
                top[coll] = n
            m = _LAST_NUM.match(coll)
            stem = m.group() if m else ""
    return top


def _beyond(keys: Iterable[str], ranges: dict[str, int]) -> list[str]:
    """Blocks (``layer3.4``) numbered past the other side's range of the same collection."""
    if not ranges:
        return []
    found: dict[str, None] = {}
    for stem in _stems(keys):
        parts = stem.split(".")
        for i, p in enumerate(parts):
            if p.isdigit() and p.isascii():
                coll = ".".join(parts[:i])
                if coll in ranges and int(p) > ranges[coll]:
                    found[".".join(parts[:i + 1])] = None
                    break
    return list(found)


def _last_modules(report: Report, n: int) -> list[str]:
    """The last ``n`` distinct modules of the model's keys (matched, then missing)."""
    mods: dict[str, None] = {}
    for keys in (report.missing, report.matched):
        for k in reversed(keys):
            mods.setdefault(k.rpartition(".")[0])
            if len(mods) == n:
                return list(reversed(mods))
    return list(reversed(mods))


def _head_only(report: Report) -> bool:
    mods = {_module(m.key) for m in report.shape_mismatch}
    return 0 < len(mods) <= 2 and mods <= set(_last_modules(report, max(2, len(mods))))


_RANGES: list[tuple[Any, Any, int, dict[str, int]]] = []  # a few targets' block ranges


def _model_ranges(report: Report, target: Target | None) -> dict[str, int]:
    """The model's numbered collections (the report's model side is the target's keys,
    so with the target at hand they are computed once per target)."""
    if target is None:
        return _index_ranges(report.matched + report.missing + report.auto_filled)
    exp = target.tensors
    for t, e, n, ranges in _RANGES:
        if t is target and e is exp and n == len(exp):
            return ranges
    ranges = _index_ranges(exp)
    _RANGES.insert(0, (target, exp, len(exp), ranges))
    del _RANGES[4:]
    return ranges


def variant_reason(report: Report, target: Target | None = None) -> str | None:
    """Why this looks like another variant of the model (depth or width), or None.
    ``target`` (the report's) saves recomputing the model's block ranges."""
    extra = _beyond(report.unexpected, _model_ranges(report, target)) \
        if report.unexpected else []
    lacking = _beyond(report.missing, _index_ranges(report.matched + report.unexpected)) \
        if report.missing else []
    shapes = f" and {_n(len(report.shape_mismatch), 'shared tensor')} differ in shape" \
        if report.shape_mismatch else ""
    if extra and len(extra) >= len(lacking):
        return (f"the checkpoint has blocks the model lacks ({_brief(extra)}){shapes}: a "
                "deeper variant of the model (e.g. resnet34 weights for resnet18)")
    if lacking:
        return (f"the model has blocks the checkpoint lacks ({_brief(lacking)}){shapes}: "
                "the checkpoint is a shallower variant of the model")
    if _head_only(report):
        return None
    # a tensor stored transposed, resampled or resized is the same model's, repaired
    # by a value step: no evidence of another variant
    mism = [m for m in report.shape_mismatch if relation(m) is None]
    mods = {_module(m.key) for m in mism}
    if len(mods) >= 3 and len(mism) >= max(3, len(report.matched) // 4):
        ratios = Counter(_ratio(m) for m in mism)
        ratio, count = ratios.most_common(1)[0]
        how = (f"every mismatched layer differs by the same ratio (x{ratio:g})"
               if count == len(mism) and ratio not in (0, 1) else
               f"{len(mism)} of {len(report.matched)} shared tensors differ in shape "
               f"(e.g. `{mism[0].key}` {list(mism[0].checkpoint_shape)} vs "
               f"{list(mism[0].model_shape)})")
        return f"{how}: a different variant of the model (width or size)"
    return None


def _ratio(m: ShapeMismatch) -> float:
    have = 1
    for d in m.checkpoint_shape:
        have *= d
    want = 1
    for d in m.model_shape:
        want *= d
    return round(have / want, 3) if want else 0


def _first_modules(report: Report, n: int) -> list[str]:
    mods = list(dict.fromkeys(_module(k) for k in report.matched[:64] + report.missing[:64]))
    return mods[:n]


def _input_only(report: Report) -> bool:
    mods = {_module(m.key) for m in report.shape_mismatch}
    return 0 < len(mods) <= 1 and mods <= set(_first_modules(report, 1))


_n = hz.counted


def _brief(keys: list[str], limit: int = 3) -> str:
    lines = group_keys(keys, limit=limit + 1)
    return ", ".join(g if g.startswith("… and") else f"`{g}`" for g in lines)
