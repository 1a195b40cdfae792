"""Ranked repair steps, each measured before it is offered.

Every candidate op is applied to the current key map (metadata only) and compared
with the target. A rename (prefix, known rename, structural rule) is offered only
when it raises coverage (parameter elements or keys, lowering neither); a clean-up
step (accept a tied alias, replace a head, drop harmless keys, accept missing keys)
only when it keeps coverage and removes a problem, and clean-ups are offered only
once no rename helps, so a rename always runs before a drop could throw away keys
it would have fixed.

Nothing guesses: structural pairing pairs leftover keys by unique dotted suffix, or
by order among keys of one shape, and offers a rule only where one general rule
explains the pairs; where several same-shaped keys could pair either way and no one
rule settles it, nothing is marked safe. When the checkpoint is another variant of
the model, no step is marked safe either.

Nothing here is quadratic: candidates come from dictionaries of prefixes, suffixes
and shapes, rules are inferred from a sample of pairs and then checked on all of
them with one regex pass over the joined key names.

This module runs the rounds and ranks the steps; the steps come from suggest_prefix
(prefixes), suggest_pairing and suggest_rules (structural renames) and suggest_cleanup
(heads, harmless keys, leftovers), each measured by suggest_measure.
"""

from __future__ import annotations

import re
from typing import Any

from pttui.core.compare.strict import UNKNOWN, compare
from pttui.core.base.meta import TensorMeta
from pttui.core.base.nogc import gc_paused
from pttui.core.recipe.recipe import RegexRename
from pttui.core.repair.suggest.apply import apply_op
from pttui.core.repair.suggest.cleanup import MAX_HEAD, MAX_INPUT, _cleanups
from pttui.core.repair.suggest.measure import _RAISES, Suggestion, _Ctx, problems, _score
from pttui.core.repair.suggest.pairing import _structural
from pttui.core.repair.suggest.prefix import WRAPPERS, _prefix_candidates
from pttui.core.repair.suggest.rules import explains, rule_for
from pttui.core.repair.suggest.layouts import layout_steps
from pttui.core.repair.suggest.values import value_steps

# re-exported: callers and tests import these from here
__all__ = ["KNOWN_RENAMES", "MAX_HEAD", "MAX_INPUT", "WRAPPERS", "Suggestion", "apply_op",
           "suggest", "explains", "problems", "rule_for"]

KNOWN_RENAMES = ((r"\.gamma$", ".weight", "LayerNorm `gamma` -> `weight` (old naming)"),
                 (r"\.beta$", ".bias", "LayerNorm `beta` -> `bias` (old naming)"))


@gc_paused
def suggest(tensors: dict[str, TensorMeta], target, accepted: tuple[str, ...] = (),
            metadata: Any = UNKNOWN, limit: int = 8, containers: list | None = None
            ) -> list[Suggestion]:
    """Steps that improve ``tensors`` (the current key map) for ``target``, best first.
    ``metadata`` is the current ``_metadata`` (module versions), when known;
    ``containers``, the source's, let it see model keys a recipe step dropped although
    they fit (those are not offered as a missing head to accept)."""
    base = compare(tensors, target, accepted_missing=accepted, ckpt_metadata=metadata)
    if base.strict_ok:
        return []
    ctx = _Ctx(tensors, target, base, accepted, metadata)
    ctx.containers = containers or []
    expected = target.tensors
    for op, title, why, rival in _prefix_candidates(tensors, expected, base):
        if rival is None:
            ctx.measure([op], title, "high", True, why, "prefix")
        else:
            ctx.measure([op], title, "low", False, f"{why}; but `{rival}` fits some of the "
                        "same keys too, and which is right cannot be told from the names",
                        "prefix")
    known: list[tuple[str, str]] = []
    if base.unexpected:
        joined = "\n".join(base.unexpected)
        for pattern, repl, title in KNOWN_RENAMES:
            # One search of all names at once; a key holding a newline may give a false
            # hit, which measure() then finds changes nothing and drops.
            hits = re.findall(rf"^.*{pattern}", joined, re.M) \
                if re.search(pattern, joined, re.M) else []
            if hits:
                known.append((pattern, repl))
                rx = re.compile(pattern)
                sample = hits[::max(1, len(hits) // 500)] + hits[-50:]
                if any(rx.sub(repl, k) in expected for k in sample):
                    ctx.measure([RegexRename(pattern, repl)], title, "high", True,
                                "old checkpoints name LayerNorm parameters gamma/beta",
                                "rename")
    layout_steps(ctx)  # a known correspondence of two libraries' layouts beats any prefix
    if not any(s.kind == "prefix" for s in ctx.found):
        _structural(ctx, known)  # (after a prefix step, the next round pairs what is left)
        value_steps(ctx)
    variant = _variant(ctx)
    if not variant and not any(s.kind in _RAISES for s in ctx.found):
        _cleanups(ctx)
    found = ctx.found
    if variant:
        for s in found:
            s.safe, s.confidence = False, "low"
            s.why = ("the checkpoint is another variant of the model (see the diagnosis): "
                     "renaming or dropping keys will not make it load — use the matching "
                     f"model ({s.why})")
    found.sort(key=lambda s: (_score(s.after), -problems(s.after)), reverse=True)
    return found[:limit]


def _variant(ctx: _Ctx) -> str | None:
    """Why the checkpoint is another variant of the model, or None: judged on the keys
    as they are, or, when none match by name yet, after the best prefix step."""
    from pttui.core.repair.diagnose.variant import variant_reason

    report = ctx.base
    if not report.matched:
        prefixes = [s for s in ctx.found if s.kind == "prefix"]
        if not prefixes:
            return None
        report = max(prefixes, key=lambda s: _score(s.after)).after
    return variant_reason(report, ctx.target)
