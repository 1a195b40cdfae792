"""Prefix candidates: strip, add, or remove a wrapper inside the keys.

Split from suggest.py: proposals come from a sample of the unexpected and missing
keys (dictionaries of whole-component prefixes); each is then measured exactly.
"""

from __future__ import annotations

import re
from collections import Counter

from pttui.core.compare.strict import Report
from pttui.core.recipe.recipe import AddPrefix, RegexRename, StripPrefix

WRAPPERS = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.",
            "model.", "base_model.model.", "net.", "network.", "backbone.", "encoder.")

_SAMPLE = 2000  # keys looked at to propose prefixes; each proposal is then measured exactly


def _sample(keys: list[str]) -> list[str]:
    step = max(1, len(keys) // _SAMPLE)
    return keys[::step]


def _heads(key: str, depth: int = 3) -> list[str]:
    """``a.b.c.d`` -> ``a.``, ``a.b.``, ``a.b.c.`` (prefixes of whole components)."""
    out, pos = [], key.find(".")
    while pos > 0 and len(out) < depth:
        out.append(key[:pos + 1])
        pos = key.find(".", pos + 1)
    return out


def _prefix_candidates(tensors, expected, base: Report):
    """Strip or add prefixes that turn unexpected keys into expected ones: (op, title, why,
    rival), ``rival`` being another prefix that claims the same keys (then the step is a
    guess, never applied unasked)."""
    strip, lands = _tally(base.unexpected, expected)  # lands: the model keys it gives
    add, takes = _tally(base.missing, tensors)  # takes: the checkpoint keys it moves
    kept = [p for p, _n in _outer(strip, 5)]
    kept += [w for w in WRAPPERS if strip[w] and w not in kept]  # outnumbered by a block
    for p in kept:  # prefix (``module.stage1.0.``) seen more often, still a candidate
        yield (StripPrefix(p), f"strip prefix `{p}`",
               f"checkpoint keys match the model once `{p}` is removed"
               + (" (a training wrapper)" if p in WRAPPERS else ""),
               None if p in WRAPPERS else _rival(p, strip, lands))
    for p, _n in _outer(add, 3):
        yield (AddPrefix(p), f"add prefix `{p}`",
               f"the model's keys are the checkpoint's keys under `{p}`",
               _rival(p, add, takes))
    joined = "\n".join(base.unexpected)
    for w in WRAPPERS:  # a wrapper in the middle of keys (model.module.x, _orig_mod inside)
        if f".{w}" in joined:
            pattern = rf"(?<=\.){re.escape(w)}"
            yield (RegexRename(pattern, ""), f"remove wrapper `{w}` inside keys",
                   f"`{w}` sits inside the keys (a wrapped submodule)", None)


def _tally(keys: list[str], present) -> tuple[Counter[str], dict[str, set[str]]]:
    """For each whole-component prefix of (a sample of) ``keys``: how many keys are in
    ``present`` once it is removed, and which names they become."""
    counts: Counter[str] = Counter()
    found: dict[str, set[str]] = {}
    for k in _sample(keys):
        for p in _heads(k):
            if k[len(p):] in present:
                counts[p] += 1
                found.setdefault(p, set()).add(k[len(p):])
    return counts, found


def _rival(p: str, counts: Counter[str], keys: dict[str, set[str]]) -> str | None:
    """Another prefix pairing some of the same keys about as often (at least half as
    often): ``stage1.0.`` and ``stage1.1.`` both turn ``stage1.N.conv1.weight`` into the
    stem's ``conv1.weight``; which block belongs there cannot be told from the names.
    A wrapper (``module.``) against one deeper prefix seen a few times is no rivalry."""
    mine = keys[p]
    for q, c in counts.most_common():
        if 2 * c < counts[p]:
            return None
        if q != p and not mine.isdisjoint(keys[q]):
            return q
    return None


def _outer(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    """The ``n`` most common prefixes, leaving out one that extends a prefix already
    kept at least as often (``module.layer2.0.`` beside ``module.``: a coincidence)."""
    kept: list[tuple[str, int]] = []
    for p, c in counts.most_common():
        if any(p.startswith(q) and qc >= c for q, qc in kept):
            continue
        kept.append((p, c))
        if len(kept) == n:
            break
    return kept
