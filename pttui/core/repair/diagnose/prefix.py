"""The best prefix change (strip, add, swap, or take a sub-tree) between the
checkpoint's keys and the model's, and which wrapper put a prefix there.

Split from diagnosis.py: used by ``diagnose``, ``variant_mismatch`` (which looks
through a wrapper prefix first) and container scoring.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pttui.core.repair.diagnose.variant import _n
from pttui.core.base.meta import TensorMeta
from pttui.core.target.targets import Target

# a wrapper prefix -> what put it there (matched on the whole prefix)
WRAPPER_PREFIXES = {"module.": "nn.DataParallel / DDP", "_orig_mod.": "torch.compile",
                    "model.": "a Lightning module", "base_model.model.": "a PEFT / LoRA model",
                    "_fsdp_wrapped_module.": "FSDP",
                    "_checkpoint_wrapped_module.": "activation checkpointing"}
# a wrapper component anywhere in a longer prefix (``module._orig_mod.``)
WRAPPERS = {"module": "nn.DataParallel / DDP", "_orig_mod": "torch.compile",
            "_fsdp_wrapped_module": "FSDP",
            "_checkpoint_wrapped_module": "activation checkpointing"}
_SAMPLE = 2000  # keys a prefix change is first scored on (the best is then measured exactly)


def _common_prefix(keys: Iterable[str], max_depth: int = 3) -> list[str]:
    """The leading components every key shares (each key keeps at least one more)."""
    keys = list(keys)
    if not keys:
        return []
    text = os.path.commonprefix([min(keys), max(keys)])  # C-level over 100,000 keys
    return text.split(".")[:-1][:max_depth]


def _wrapper_label(prefix: str) -> str | None:
    if prefix in WRAPPER_PREFIXES:
        return WRAPPER_PREFIXES[prefix]
    comps = prefix.rstrip(".").split(".")
    labels = list(dict.fromkeys(WRAPPERS[c] for c in comps if c in WRAPPERS))
    return " + ".join(labels) or None


def _prefix_fix(tensors: Mapping[str, TensorMeta], target: Target, base: int):
    """The best prefix change (strip, add, swap, or take a sub-tree) -> (line, renamed).
    ``base``: how many model keys the checkpoint matches by name now. Candidates are
    scored on a sample of the keys; only the best is applied to all of them."""
    exp = target.tensors
    cands: list[tuple[str, Any]] = []  # (line, key -> new key or None)

    def strip(n: int):
        return lambda k: k[n:]

    def swap(n: int, q: str):
        return lambda k: q + k[n:]

    def add(q: str):
        return lambda k: q + k

    def part(p: str):
        n = len(p)
        return lambda k: k[n:] if k.startswith(p) else None

    cp, tp = _common_prefix(tensors), _common_prefix(exp)
    for d in range(1, len(cp) + 1):
        p = ".".join(cp[:d]) + "."
        label = _wrapper_label(p)
        line = (f"the weights sit under prefix `{p}` ({label})" if p in WRAPPER_PREFIXES
                and p != "module." and p != "_orig_mod." else
                f"every checkpoint key has the prefix `{p}`" + (f" ({label})" if label else ""))
        cands.append((line + ": strip it", strip(len(p))))
        for e in range(1, len(tp) + 1):
            q = ".".join(tp[:e]) + "."
            if q != p:
                cands.append((f"the checkpoint's prefix `{p}` is `{q}` in the model: "
                              "replace it", swap(len(p), q)))
    adds = [".".join(tp[:e]) + "." for e in range(1, len(tp) + 1)]
    wraps = ""
    if not tp:  # the model wraps a base model beside a head: `bert.*` + `classifier.*`
        firsts = Counter(k.partition(".")[0] for k in _sampled(list(exp)) if "." in k)
        adds = [f + "." for f, _ in firsts.most_common(3)]
        wraps = " (a base model inside a model with its own head)"
    for q in adds:
        if not any(k.startswith(q) for k in _sampled(list(tensors))):
            cands.append((f"the model's keys are the checkpoint's keys under `{q}`{wraps}: "
                          "add it", add(q)))
    if not cp:
        firsts = Counter(k.partition(".")[0] for k in tensors if "." in k)
        for first, _ in firsts.most_common(5):
            p = first + "."
            rest = len(tensors) - firsts[first]
            cands.append((f"the model's weights are the checkpoint's `{p}` part (plus "
                          f"{_n(rest, 'other key')}): take that part", part(p)))
    if not cands:
        return None
    sample = _sampled(list(tensors))

    def hits(fn, keys) -> int:
        return sum(1 for k in keys if (new := fn(k)) is not None and new in exp)

    best = max(cands, key=lambda c: hits(c[1], sample))
    line, fn = best
    renamed = {}
    for k, t in tensors.items():
        new = fn(k)
        if new is not None:
            renamed[new] = t
    score = sum(1 for k in renamed if k in exp)
    if score <= base or score < min(2, len(exp)):
        return None
    return f"{line} to match {score}/{len(exp)} model keys", renamed


def _sampled(keys: list[str]) -> list[str]:
    return keys[::max(1, len(keys) // _SAMPLE)]
