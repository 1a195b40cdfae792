"""Plain-words diagnoses of a comparison: why the checkpoint does not fit, ranked.

Kept apart from compare.py (which re-exports ``diagnose``, ``variant_mismatch`` and
``best_container``) so each stays small. Heuristics work on key names and shapes
only; each answers "what happened to this file", not "which op fixes it".
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pttui.core.compare import Report, ShapeMismatch, compare, group_keys
from pttui.core.meta import Checkpoint, Container, ReadError, TensorMeta
from pttui.core.nogc import gc_paused
from pttui.core.targets import Target


# -- structure checks used by diagnose and --auto ---------------------------------------

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


def _variant_reason(report: Report, target: Target | None = None) -> str | None:
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
    mism = report.shape_mismatch
    if _head_only(report):
        return None
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


def variant_mismatch(report: Report, tensors: Mapping[str, TensorMeta] | None = None,
                     target: Target | None = None) -> bool:
    """True when the checkpoint is another variant of the architecture (resnet34 for
    resnet18, a wider model): no renaming fixes that, so ``--auto`` refuses. Given the
    tensors and target, a wrapper prefix (``module.``) is looked through first."""
    if _variant_reason(report, target) is not None:
        return True
    if tensors is None or target is None or report.strict_ok:
        return False
    fix = _prefix_fix(tensors, target, len(report.matched))
    return fix is not None and _variant_reason(compare(fix[1], target), target) is not None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _brief(keys: list[str], limit: int = 3) -> str:
    lines = group_keys(keys, limit=limit + 1)
    return ", ".join(g if g.startswith("… and") else f"`{g}`" for g in lines)


# -- diagnoses ------------------------------------------------------------------------

OPTIMIZER_NOTE = "this is an optimizer state, not model weights"
# a wrapper prefix -> what put it there (matched on the whole prefix)
WRAPPER_PREFIXES = {"module.": "nn.DataParallel / DDP", "_orig_mod.": "torch.compile",
                    "model.": "a Lightning module", "base_model.model.": "a PEFT / LoRA model",
                    "_fsdp_wrapped_module.": "FSDP",
                    "_checkpoint_wrapped_module.": "activation checkpointing"}
# a wrapper component anywhere in a longer prefix (``module._orig_mod.``)
WRAPPERS = {"module": "nn.DataParallel / DDP", "_orig_mod": "torch.compile",
            "_fsdp_wrapped_module": "FSDP",
            "_checkpoint_wrapped_module": "activation checkpointing"}
OPTIMIZER_STATE = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                             "square_avg", "acc_delta", "grad_avg", "exp_inf", "step",
                             "sum", "mu", "eta", "ax", "prev", "step_size", "param_groups"})
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


def _optimizer_like(keys: list[str]) -> bool:
    hits = sum(k.rpartition(".")[2] in OPTIMIZER_STATE and
               any(p.isdigit() for p in k.split(".")[:-1]) for k in keys)
    return bool(keys) and hits * 2 >= len(keys)


@gc_paused
def diagnose(ckpt_tensors: Mapping[str, TensorMeta], target: Target, report: Report,
             containers: list[Container] | None = None) -> list[str]:
    """Plain-words reasons the checkpoint does not fit, most telling first, one line each.
    ``ckpt_tensors`` is the key map as it stands (after a recipe); ``containers``, the
    source's, let it tell keys a recipe step dropped from keys the file lacks."""
    if not ckpt_tensors:
        return ["the checkpoint holds no tensors: nothing to load"]
    out: list[str] = []
    keys = list(ckpt_tensors)
    other = _better_container(ckpt_tensors, target, report, containers or [])
    if _optimizer_like(_sampled(keys)) or any(c.kind == "optimizer" and c.tensors is ckpt_tensors
                                              for c in containers or []):
        out.append(f"{OPTIMIZER_NOTE} (keys like `{keys[0]}`)"
                   + (f"; the weights are in container {other}" if other else
                      "; load the model weights file saved next to it"))
        return out
    if other:
        out.append(f"the weights that fit are in container {other}: select it")
    rep, tensors = report, ckpt_tensors
    if report.strict_ok:
        out.append(f"the checkpoint fits the model: all {report.keys_total} keys match "
                   "in name and shape")
    else:
        fix = _prefix_fix(ckpt_tensors, target, len(report.matched))
        if fix:
            out.append(fix[0])
            tensors = fix[1]
            rep = compare(tensors, target)
    out += _structure(rep, tensors, target, ckpt_tensors, containers or [])
    if report.dtype_diff:
        pairs = Counter((d.checkpoint_dtype, d.model_dtype) for d in report.dtype_diff)
        (have, want), _ = pairs.most_common(1)[0]
        out.append(f"{_n(len(report.dtype_diff), 'tensor')} stored as {have} where the "
                   f"model has {want}: load_state_dict casts them (no action needed)")
    if report.tied_missing:
        out.append(f"{_brief(report.tied_missing)} "
                   f"{'shares its' if len(report.tied_missing) == 1 else 'share their'} "
                   "tensor with another key (tied weights) and the file stores it once: it "
                   "loads through the twin; accept it missing (nothing stays uninitialised)")
    if not out and not rep.matched:
        out.append("the checkpoint and the model share no key names and no prefix change "
                   "helps: is this the checkpoint of another model?")
    if not out:
        sides = [f"{_n(len(rep.missing), 'model key')} missing ({_brief(rep.missing)})"
                 if rep.missing else "",
                 f"{_n(len(rep.unexpected), 'checkpoint key')} unexpected "
                 f"({_brief(rep.unexpected)})" if rep.unexpected else "",
                 f"{_n(len(rep.shape_mismatch), 'shared key')} of another shape "
                 f"({_brief([m.key for m in rep.shape_mismatch])})" if rep.shape_mismatch
                 else ""]
        said = " and ".join(filter(None, sides))
        if said:
            out.append(said + ": no common pattern found")
    return out


def _first_modules(report: Report, n: int) -> list[str]:
    mods = list(dict.fromkeys(_module(k) for k in report.matched[:64] + report.missing[:64]))
    return mods[:n]


def _input_only(report: Report) -> bool:
    mods = {_module(m.key) for m in report.shape_mismatch}
    return 0 < len(mods) <= 1 and mods <= set(_first_modules(report, 1))


def _dropped_but_fit(tensors: Mapping[str, TensorMeta], target: Target, keys: list[str],
                     containers: list[Container]) -> list[str]:
    """Of the model ``keys`` missing from ``tensors`` (the recipe's result), those the
    source holds under the same name (or with the same prefix change as the kept keys)
    with the model's shape: a recipe step dropped keys that fit."""
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
    kept = {m.key for m in tensors.values()}  # renamed, not dropped
    exp, found = target.tensors, []
    for k in keys:
        name = sp + k[len(cp):] if k.startswith(cp) else k
        if name in kept or k in kept:
            continue
        have = src.tensors.get(name) or src.tensors.get(k)
        if have is not None and have.shape == exp[k].shape:
            found.append(k)
    return found


def _structure(rep: Report, tensors: Mapping[str, TensorMeta], target: Target,
               current: Mapping[str, TensorMeta] | None = None,
               containers: list[Container] | None = None) -> list[str]:
    """Diagnoses that need the keys already aligned: variant, head, renames, coverage."""
    if rep.strict_ok:
        return []
    variant = _variant_reason(rep, target)
    if variant:
        return [f"{variant}: renaming will not fix it"]
    out: list[str] = []
    mism = rep.shape_mismatch
    if mism and _head_only(rep):
        where = _brief([m.key for m in mism])
        outs = {(m.checkpoint_shape[0], m.model_shape[0]) for m in mism
                if m.checkpoint_shape and m.model_shape}
        same_rest = all(len(m.checkpoint_shape) == len(m.model_shape) and
                        m.checkpoint_shape[1:] == m.model_shape[1:] for m in mism)
        if len(outs) == 1 and same_rest:
            have, want = outs.pop()
            out.append(f"only the classifier differs: {have} vs {want} classes ({where}): "
                       f"build the model with num_classes={have}, or drop those keys and "
                       "accept them missing")
        else:
            m = mism[0]
            out.append(f"only the last layer differs ({where}: {list(m.checkpoint_shape)} "
                       f"vs {list(m.model_shape)})")
    elif mism and _input_only(rep):
        m = mism[0]
        have, want = m.checkpoint_shape, m.model_shape
        how = (f": the checkpoint was made for {_n(have[1], 'input channel')}, the model "
               f"for {want[1]}" if len(have) == len(want) >= 2 and have[0] == want[0]
               and have[1] != want[1] and have[2:] == want[2:] else "")
        out.append(f"only the input layer differs ({_brief([x.key for x in mism])}: "
                   f"{list(have)} vs {list(want)}){how}: build the model for that input, or "
                   "drop those keys and accept them missing (that layer starts untrained)")
    benign = set(rep.benign_missing) | set(rep.benign_unexpected) | set(rep.tied_missing)
    real_missing = [k for k in rep.missing if k not in benign]
    real_unexp = [k for k in rep.unexpected if k not in benign]
    dropped = _dropped_but_fit(current, target, real_missing, containers or []) \
        if current is not None and tensors is current else []
    if dropped:
        one = len(dropped) == 1
        out.append(f"{_brief(dropped)} {'is' if one else 'are'} in the checkpoint and "
                   f"{'fits' if one else 'fit'} this model as built now, but a recipe step "
                   f"drops {'it' if one else 'them'}: undo that drop (it is not a missing "
                   "head)")
        gone = set(dropped)
        real_missing = [k for k in real_missing if k not in gone]
    if real_missing and not real_unexp and not mism \
            and set(map(_module, real_missing)) <= set(_last_modules(rep, 2)):
        out.append(f"the checkpoint has no classifier ({_brief(real_missing)} missing): a "
                   "headless / feature-extractor (or base-model) checkpoint; accept them "
                   "missing — they start untrained")
    elif real_missing and real_unexp:
        have = Counter(tensors[k].shape for k in real_unexp)
        want = Counter(target.tensors[k].shape for k in real_missing)
        paired = sum((have & want).values())
        if paired * 5 >= 4 * max(len(real_missing), len(real_unexp)):
            out.append(f"{len(real_missing)} missing and {len(real_unexp)} unexpected keys "
                       "pair up by shape: the same weights under other names (unexpected "
                       f"like `{group_keys(real_unexp[:64])[0]}`, missing like "
                       f"`{group_keys(real_missing[:64])[0]}`); rename them")
    if (rep.missing or rep.unexpected) and not real_missing and not real_unexp and not dropped \
            and (rep.benign_missing or rep.benign_unexpected):
        out.append("only harmless keys differ ("
                   f"{_brief(rep.benign_missing + rep.benign_unexpected)}): drop or accept them")
    ok, total = rep.coverage_params
    if real_missing and total and ok * 10 < total * 9 and len(real_unexp) * 10 <= len(tensors) \
            and not any("classifier" in line for line in out):
        out.append(f"the checkpoint holds only {100 * ok // total}% of the model's parameters "
                   f"({rep.keys_ok}/{rep.keys_total} keys): a shard, a backbone or a "
                   "partial save")
    if real_unexp and not real_missing and not mism:
        out.append(f"the checkpoint has {len(real_unexp)} keys the model lacks "
                   f"({_brief(real_unexp)}); every model key is there: drop the extra ones")
    if mism and not out:
        m = mism[0]
        out.append(f"{_n(len(mism), 'shared tensor')} {'differs' if len(mism) == 1 else 'differ'}"
                   f" in shape ({_brief([x.key for x in mism])}; e.g. `{m.key}` "
                   f"{list(m.checkpoint_shape)} vs {list(m.model_shape)})")
    return out


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
