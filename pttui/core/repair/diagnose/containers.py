"""Which container of a checkpoint holds the weights: optimizer states, the container
that fits best, and model keys a recipe step dropped although the source holds them.

Split from diagnosis.py: these look at the source's containers, not at one key map.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping

from pttui.core.compare.strict import Report, compare
from pttui.core.repair.diagnose.prefix import _common_prefix
from pttui.core.base.meta import Checkpoint, Container, ReadError, TensorMeta, source_keys
from pttui.core.target.targets import Target

OPTIMIZER_STATE = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                             "square_avg", "acc_delta", "grad_avg", "exp_inf", "step",
                             "sum", "mu", "eta", "ax", "prev", "step_size", "param_groups"})


def _optimizer_like(keys: list[str]) -> bool:
    hits = sum(k.rpartition(".")[2] in OPTIMIZER_STATE and
               any(p.isdigit() for p in k.split(".")[:-1]) for k in keys)
    return bool(keys) and hits * 2 >= len(keys)


def dropped_but_fit(tensors: Mapping[str, TensorMeta], target: Target, keys: list[str],
                     containers: list[Container]) -> list[str]:
    """Of the model ``keys`` missing from ``tensors`` (the recipe's result), those the
    source holds under the same name (or with the same prefix change as the kept keys)
    with the model's shape: a recipe step dropped keys that fit."""
    return dropped_from_file(tensors, target, keys, containers, same_shape=True)


def dropped_from_file(tensors: Mapping[str, TensorMeta], target: Target, keys: list[str],
                      containers: list[Container], same_shape: bool = False) -> list[str]:
    """Of the model ``keys`` missing from ``tensors``, those the source holds under the
    same name (or the kept keys' prefix change), of any shape unless ``same_shape``:
    missing because a recipe step dropped them, not because the file lacks them."""
    if not keys or not containers:
        return []
    sources = {m.key for m in itertools.islice(tensors.values(), 64)}
    src = max(containers, key=lambda c: sum(k in c.tensors for k in sources))
    if not any(k in src.tensors for k in sources):
        return []
    shift: Counter[tuple[str, str]] = Counter()  # (source prefix, current prefix)
    for cur, meta in itertools.islice(tensors.items(), 64):
        old = meta.key
        tail = 0
        while tail < min(len(old), len(cur)) and old[-1 - tail] == cur[-1 - tail]:
            tail += 1
        shift[(old[:len(old) - tail], cur[:len(cur) - tail])] += 1
    (sp, cp), _ = shift.most_common(1)[0] if shift else (("", ""), 0)
    kept = source_keys(tensors.values())  # renamed or computed, not dropped
    exp, found = target.tensors, []
    for k in keys:
        name = sp + k[len(cp):] if k.startswith(cp) else k
        if name in kept or k in kept:
            continue
        have = src.tensors.get(name) or src.tensors.get(k)
        if have is not None and (not same_shape or have.shape == exp[k].shape):
            found.append(k)
    return found


def _score(tensors: Mapping[str, TensorMeta], target: Target) -> int:
    """Parameter elements that fit, raw or with a common wrapper prefix stripped."""
    best = compare(tensors, target).elements_ok
    cp = _common_prefix(tensors)
    for d in range(1, len(cp) + 1):
        p = ".".join(cp[:d]) + "."
        best = max(best, compare({k[len(p):]: t for k, t in tensors.items()},
                                 target).elements_ok)
    return best


def best_container(ckpt: Checkpoint, target: Target) -> tuple[tuple[str, ...], Report]:
    """The container that fits ``target`` best by parameter coverage, and its raw report."""
    if not ckpt.containers:
        raise ReadError(f"{ckpt.path}: holds no tensors to compare with {target.label}")
    scored = [(_score(c.tensors, target), c.kind != "optimizer", c.path == ckpt.selected, c)
              for c in ckpt.containers]
    best = max(scored, key=lambda s: s[:3])[3]
    return best.path, compare(best.tensors, target)


def _better_container(tensors, target, report, containers) -> str | None:
    if len(containers) < 2:
        return None
    current = max(_score(tensors, target), report.elements_ok)
    score, best = max(((_score(c.tensors, target), c) for c in containers),
                      key=lambda sc: sc[0])
    if best.tensors is tensors or score <= current:
        return None
    return f"`{'.'.join(best.path) or '(root)'}`"
