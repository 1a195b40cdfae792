"""Plain-words diagnoses of a comparison: why the checkpoint does not fit, ranked.

Kept apart from compare.py so each stays small. Heuristics work on key names and
shapes only; each answers "what happened to this file", not "which op fixes it".
This module holds the wording (``diagnose``) and the public entry points; the checks
live in diagnosis_variant (variant, head, input layer), diagnosis_prefix (prefix
changes, wrappers) and diagnosis_containers (optimizer states, best container).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from pttui.core.compare.strict import Report, compare, group_keys
from pttui.core.repair.diagnose.containers import (OPTIMIZER_STATE, _better_container,
                                             dropped_but_fit, dropped_from_file,
                                             _optimizer_like, best_container)
from pttui.core.repair.diagnose.prefix import WRAPPER_PREFIXES, WRAPPERS, _prefix_fix, _sampled
from pttui.core.repair.diagnose.relations import relation
from pttui.core.repair.diagnose.variant import (_brief, _head_only, _input_only, _last_modules,
                                          _module, _n, variant_reason)
from pttui.core.base.meta import Container, TensorMeta
from pttui.core.base.nogc import gc_paused
from pttui.core.target.targets import Target

# re-exported: callers (autofix, guide, suggest, the CLI) import these from here
__all__ = ["OPTIMIZER_NOTE", "OPTIMIZER_STATE", "WRAPPER_PREFIXES", "WRAPPERS",
           "best_container", "diagnose", "variant_mismatch", "dropped_but_fit",
           "variant_reason"]

OPTIMIZER_NOTE = "this is an optimizer state, not model weights"


def variant_mismatch(report: Report, tensors: Mapping[str, TensorMeta] | None = None,
                     target: Target | None = None) -> bool:
    """True when the checkpoint is another variant of the architecture (resnet34 for
    resnet18, a wider model): no renaming fixes that, so ``--auto`` refuses. Given the
    tensors and target, a wrapper prefix (``module.``) is looked through first."""
    if variant_reason(report, target) is not None:
        return True
    if tensors is None or target is None or report.strict_ok:
        return False
    fix = _prefix_fix(tensors, target, len(report.matched))
    return fix is not None and variant_reason(compare(fix[1], target), target) is not None


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


def _structure(rep: Report, tensors: Mapping[str, TensorMeta], target: Target,
               current: Mapping[str, TensorMeta] | None = None,
               containers: list[Container] | None = None) -> list[str]:
    """Diagnoses that need the keys already aligned: variant, head, renames, coverage."""
    if rep.strict_ok:
        return []
    variant = variant_reason(rep, target)
    if variant:
        return [f"{variant}: renaming will not fix it"]
    out: list[str] = []
    mism = rep.shape_mismatch
    related = {m.key: relation(m) for m in mism}
    if mism and all(related.values()):
        by_clause: dict[str, list[str]] = {}
        for key, clause in related.items():
            by_clause.setdefault(clause or "", []).append(key)
        for clause, keys in by_clause.items():
            many = len(keys) > 1
            out.append(f"{_brief(keys)} " + (clause.replace("is ", "are ", 1).replace(
                "holds ", "hold ", 1).replace(" it", " them") if many else clause))
    elif mism and _head_only(rep):
        where = _brief([m.key for m in mism])
        outs = {(m.checkpoint_shape[0], m.model_shape[0]) for m in mism
                if m.checkpoint_shape and m.model_shape}
        same_rest = all(len(m.checkpoint_shape) == len(m.model_shape) and
                        m.checkpoint_shape[1:] == m.model_shape[1:] for m in mism)
        if len(outs) == 1 and same_rest:
            have, want = outs.pop()
            rebuild = (f"build the model with num_classes={have}, or "
                       if getattr(target, "kind", "model") == "model" else "")
            out.append(f"only the classifier differs: {have} vs {want} classes ({where}): "
                       f"{rebuild}drop those keys and accept them missing")
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
    dropped = dropped_but_fit(current, target, real_missing, containers or []) \
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
        own = dropped_from_file(current, target, real_missing, containers or []) \
            if current is not None and tensors is current else []
        if own:  # the file has a head: the recipe dropped it (another class count)
            accepted = set(rep.accepted_missing) >= set(real_missing)
            out.append(f"the recipe drops the checkpoint's own classifier ({_brief(own)}, "
                       "of another shape): the model's head starts untrained"
                       + ("" if accepted else "; accept it missing"))
        else:
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
