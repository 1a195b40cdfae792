"""Plain-words diagnoses of a comparison: why the checkpoint does not fit, ranked.

Kept apart from compare.py (which re-exports ``diagnose``, ``variant_mismatch`` and
``best_container``) so each stays small. Heuristics work on key names and shapes
only; each answers "what happened to this file", not "which op fixes it".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pttui.core.compare import Report, ShapeMismatch, compare, group_keys
from pttui.core.meta import Checkpoint, Container, ReadError, TensorMeta
from pttui.core.nogc import gc_paused
from pttui.core.targets import Target


# -- structure checks used by diagnose and --auto ---------------------------------------

def _module(key: str) -> str:
    return key.rpartition(".")[0]


def _index_ranges(keys: Iterable[str]) -> dict[str, int]:
    """``layer3`` -> highest numeric child index seen, for every numbered collection."""
    top: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            if p.isdigit() and p.isascii():
                coll = ".".join(parts[:i])
                top[coll] = max(top.get(coll, -1), int(p))
    return top


def _beyond(keys: Iterable[str], ranges: dict[str, int]) -> list[str]:
    """Blocks (``layer3.4``) numbered past the other side's range of the same collection."""
    found: dict[str, None] = {}
    for key in keys:
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            coll = ".".join(parts[:i])
            if p.isdigit() and p.isascii() and coll in ranges and int(p) > ranges[coll]:
                found[".".join(parts[:i + 1])] = None
                break
    return list(found)


def _last_modules(report: Report, n: int) -> list[str]:
    mods = list(dict.fromkeys(_module(k) for k in report.matched + report.missing))
    return mods[-n:]


def _head_only(report: Report) -> bool:
    mods = {_module(m.key) for m in report.shape_mismatch}
    return 0 < len(mods) <= 2 and mods <= set(_last_modules(report, max(2, len(mods))))


def _variant_reason(report: Report) -> str | None:
    """Why this looks like another variant of the model (depth or width), or None."""
    model_keys = report.matched + report.missing + report.auto_filled
    ckpt_keys = report.matched + report.unexpected
    extra = _beyond(report.unexpected, _index_ranges(model_keys))
    lacking = _beyond(report.missing, _index_ranges(ckpt_keys))
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
    if _variant_reason(report) is not None:
        return True
    if tensors is None or target is None or report.strict_ok:
        return False
    fix = _prefix_fix(tensors, target, report.keys_ok)
    return fix is not None and _variant_reason(compare(fix[1], target)) is not None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _brief(keys: list[str], limit: int = 3) -> str:
    lines = group_keys(keys, limit=limit + 1)
    return ", ".join(g if g.startswith("… and") else f"`{g}`" for g in lines)


# -- diagnoses ------------------------------------------------------------------------

WRAPPERS = {"module": "nn.DataParallel / DDP", "_orig_mod": "torch.compile",
            "model": "a Lightning module", "_fsdp_wrapped_module": "FSDP",
            "_checkpoint_wrapped_module": "activation checkpointing"}
OPTIMIZER_STATE = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                             "square_avg", "acc_delta", "grad_avg", "exp_inf", "step",
                             "sum", "mu", "eta", "ax", "prev", "step_size", "param_groups"})


def _common_prefix(keys: Iterable[str], max_depth: int = 3) -> list[str]:
    """The leading components every key shares (each key keeps at least one more)."""
    common: list[str] | None = None
    for key in keys:
        parts = key.split(".", max_depth)[:-1]
        if common is None:
            common = parts
        else:
            n = 0
            while n < len(common) and n < len(parts) and common[n] == parts[n]:
                n += 1
            del common[n:]
        if not common:
            return []
    return common or []


def _prefix_fix(tensors: Mapping[str, TensorMeta], target: Target, base: int):
    """The best prefix change (strip, add, swap, or take a sub-tree) -> (line, renamed)."""
    exp = target.tensors
    cands: list[tuple[int, str, dict[str, TensorMeta]]] = []

    def consider(line: str, renamed: dict[str, TensorMeta]) -> None:
        cands.append((sum(k in exp for k in renamed), line, renamed))

    cp, tp = _common_prefix(tensors), _common_prefix(exp)
    for d in range(1, len(cp) + 1):
        p = ".".join(cp[:d]) + "."
        label = WRAPPERS.get(cp[d - 1])
        line = (f"the weights sit under prefix `{p}` ({label})" if cp[d - 1] == "model" else
                f"every checkpoint key has the prefix `{p}`" + (f" ({label})" if label else ""))
        consider(line + ": strip it", {k[len(p):]: t for k, t in tensors.items()})
        for e in range(1, len(tp) + 1):
            q = ".".join(tp[:e]) + "."
            consider(f"the checkpoint's prefix `{p}` is `{q}` in the model: replace it",
                     {q + k[len(p):]: t for k, t in tensors.items()})
    for e in range(1, len(tp) + 1):
        q = ".".join(tp[:e]) + "."
        if not any(k.startswith(q) for k in tensors):
            consider(f"every model key starts with `{q}` and no checkpoint key does: add it",
                     {q + k: t for k, t in tensors.items()})
    if not cp:
        firsts = Counter(k.partition(".")[0] for k in tensors if "." in k)
        for first, _ in firsts.most_common(5):
            p = first + "."
            sub = {k[len(p):]: t for k, t in tensors.items() if k.startswith(p)}
            rest = len(tensors) - len(sub)
            consider(f"the model's weights are the checkpoint's `{p}` part (plus "
                     f"{_n(rest, 'other key')}): take that part", sub)
    if not cands:
        return None
    best = max(cands, key=lambda c: c[0])
    if best[0] <= base or best[0] < min(2, len(exp)):
        return None
    return f"{best[1]} to match {best[0]}/{len(exp)} model keys", best[2]


def _optimizer_like(keys: list[str]) -> bool:
    hits = sum(k.rpartition(".")[2] in OPTIMIZER_STATE and
               any(p.isdigit() for p in k.split(".")[:-1]) for k in keys)
    return bool(keys) and hits * 2 >= len(keys)


@gc_paused
def diagnose(ckpt_tensors: Mapping[str, TensorMeta], target: Target, report: Report,
             containers: list[Container] | None = None) -> list[str]:
    """Plain-words reasons the checkpoint does not fit, most telling first, one line each."""
    if not ckpt_tensors:
        return ["the checkpoint holds no tensors: nothing to load"]
    out: list[str] = []
    keys = list(ckpt_tensors)
    other = _better_container(ckpt_tensors, target, report, containers or [])
    if _optimizer_like(keys) or any(c.kind == "optimizer" and c.tensors is ckpt_tensors
                                    for c in containers or []):
        out.append(f"this is an optimizer state, not model weights (keys like `{keys[0]}`)"
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
        fix = _prefix_fix(ckpt_tensors, target, report.keys_ok)
        if fix:
            out.append(fix[0])
            tensors = fix[1]
            rep = compare(tensors, target)
    out += _structure(rep, tensors, target)
    if report.dtype_diff:
        pairs = Counter((d.checkpoint_dtype, d.model_dtype) for d in report.dtype_diff)
        (have, want), _ = pairs.most_common(1)[0]
        out.append(f"{_n(len(report.dtype_diff), 'tensor')} stored as {have} where the "
                   f"model has {want}: load_state_dict casts them (no action needed)")
    if report.tied_missing:
        out.append(f"{_brief(report.tied_missing)} share their tensor with other keys "
                   "(tied weights): they load through the twin; accept them missing")
    if not out and not rep.matched:
        out.append("the checkpoint and the model share no key names and no prefix change "
                   "helps: is this the checkpoint of another model?")
    if not out:
        sides = [f"{_n(len(rep.missing), 'model key')} missing ({_brief(rep.missing)})"
                 if rep.missing else "",
                 f"{_n(len(rep.unexpected), 'checkpoint key')} unexpected "
                 f"({_brief(rep.unexpected)})" if rep.unexpected else ""]
        out.append(" and ".join(filter(None, sides)) + ": no common pattern found")
    return out


def _structure(rep: Report, tensors: Mapping[str, TensorMeta], target: Target) -> list[str]:
    """Diagnoses that need the keys already aligned: variant, head, renames, coverage."""
    if rep.strict_ok:
        return []
    variant = _variant_reason(rep)
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
    benign = set(rep.benign_missing) | set(rep.benign_unexpected)
    real_missing = [k for k in rep.missing if k not in benign]
    real_unexp = [k for k in rep.unexpected if k not in benign]
    if real_missing and not real_unexp and not mism \
            and set(map(_module, real_missing)) <= set(_last_modules(rep, 2)):
        out.append(f"the checkpoint has no classifier ({_brief(real_missing)} missing): a "
                   "headless / feature-extractor checkpoint; accept them missing")
    elif real_missing and real_unexp:
        have = Counter(tensors[k].shape for k in real_unexp)
        want = Counter(target.tensors[k].shape for k in real_missing)
        paired = sum((have & want).values())
        if paired * 5 >= 4 * max(len(real_missing), len(real_unexp)):
            out.append(f"{len(real_missing)} missing and {len(real_unexp)} unexpected keys "
                       "pair up by shape: the same weights under other names (e.g. "
                       f"`{group_keys(real_unexp)[0]}` vs `{group_keys(real_missing)[0]}`); "
                       "rename them")
    if (rep.missing or rep.unexpected) and not real_missing and not real_unexp:
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
