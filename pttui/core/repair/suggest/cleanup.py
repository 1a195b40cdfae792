"""Clean-up steps: accept tied aliases or a missing head, replace a mismatched head or
input layer, drop harmless keys, accept what is left.

Split from suggest.py: these steps keep coverage and remove a problem, and are only
offered once no rename helps.
"""

from __future__ import annotations

import re

from pttui.core.base import humanize as hz
from pttui.core.compare.strict import is_benign, group_keys
from pttui.core.base.meta import TensorMeta
from pttui.core.recipe.recipe import AcceptMissing, Drop
from pttui.core.repair.suggest.measure import _Ctx

# a module named like an output layer (first component of its path, or right under one
# wrapper such as `backbone.` / `model.`)
_HEAD_NAMES = re.compile(r"^(?:[^.]+\.)?(fc|head|heads|classifier|cls|logits|lm_head|"
                         r"last_linear|proj_head|score|pred|predictions)(\.|$)")
_INPUT_NAMES = re.compile(r"^(?:[^.]+\.)?(conv1|conv_proj|conv_stem|stem|patch_embed|embed|"
                          r"embeddings|wte|word_embeddings|features\.0|input)(\.|$)")
MAX_HEAD = 0.5  # a "head" holding more of the model than this is no head
MAX_INPUT = 0.10  # an input layer dropped beyond this leaves too much untrained (as --auto)


def _cleanups(ctx: _Ctx) -> None:
    base, tensors, target = ctx.base, ctx.tensors, ctx.target
    expected = target.tensors
    accepted = set(base.accepted_missing)
    tied = [k for k in base.tied_missing if k not in accepted]
    if tied:
        twins = [target.tied.get(k) or next(
            (a for a in _aliases(target).get(k, ()) if a in tensors), "?") for k in tied]
        pairs = ", ".join(f"`{k}` = `{t}`" for k, t in list(zip(tied, twins))[:3])
        ctx.measure([AcceptMissing(tuple(tied))],
                    f"accept {_n(len(tied), 'tied alias', 'tied aliases')} missing "
                    "(they load through their twin)", "high", True,
                    f"the model ties these weights ({pairs}) and the file stores each once: "
                    "a strict=False load fills both names", "tied")
    bad = [s.key for s in base.shape_mismatch]
    if bad:
        _mismatched(ctx, bad)
    skip = set(base.benign_missing) | set(base.tied_missing) | accepted
    real_missing = [k for k in base.missing if k not in skip]
    benign = base.benign_unexpected
    stray = len(base.unexpected) > len(benign)  # keys that may be the missing ones renamed
    head = _head_keys(real_missing, target) if real_missing and not bad and not stray \
        else None
    if head and ctx.containers:
        from pttui.core.repair.diagnose.containers import dropped_but_fit

        if dropped_but_fit(tensors, target, head, ctx.containers):
            head = None  # a recipe step dropped them and they fit: undo it, not accept
    if head:
        mods = group_keys(list(dict.fromkeys(k.rpartition(".")[0] for k in head)))
        numel = sum(_numel(expected[k]) for k in head)
        total = base.coverage_params[1] or 1
        ctx.measure([AcceptMissing(tuple(head))],
                    f"accept the missing head `{', '.join(mods)}` (it starts untrained)",
                    "high", numel <= MAX_HEAD * total,
                    f"the checkpoint has no weights for the model's output layer "
                    f"({_n(len(head), 'key')}, {numel / total:.1%} of its elements): a "
                    "headless or base-model checkpoint; strict=False leaves exactly these "
                    "keys at the model's initialisation", "head", head_keys=head)
    benign_missing = [k for k in base.benign_missing if k not in accepted]
    if benign_missing:
        ctx.measure([AcceptMissing(tuple(benign_missing))],
                    f"accept {_n(len(benign_missing), 'harmless missing key')}", "high", True,
                    "counters and derived buffers (e.g. num_batches_tracked) the file lacks: "
                    "the model's own values serve", "benign")
    if benign:
        drop, after_map = _drop_op(benign, tensors)
        ctx.measure([drop], f"drop {_n(len(benign), 'harmless extra key')} "
                    f"({_pattern_text(drop)})", "high", True,
                    "buffers the model does not keep (e.g. num_batches_tracked, "
                    "position_ids): harmless noise", "benign", after_map=after_map,
                    affected=[(k, "") for k in benign])
    if base.coverage_params[0] * 2 < base.coverage_params[1]:
        return  # most of the model is unmatched: dropping or accepting would hide a wrong file
    benign_set = set(benign)
    others = [k for k in base.unexpected if k not in benign_set]
    if others:
        drop, after_map = _drop_op(others, tensors)
        # Every model key is loaded and the extras are the smaller part of the file (a
        # task head on a base model, an extra module): dropping them is safe. Never for
        # adapter weights (LoRA): they are the fine-tune, and pttui does not merge them.
        extra = sum(_numel(tensors[k]) for k in others)
        gone = set(others)
        kept = sum(_numel(m) for k, m in tensors.items() if k not in gone)
        adapters = [k for k in others if _ADAPTER.search(k)]
        safe = not real_missing and not bad and extra <= kept and not adapters
        why = ("the model has no place for them (strict=False would ignore them too)"
               + ("; every model key loads without them" if safe else "")
               + (f"; {_n(len(adapters), 'of them looks', 'of them look')} like adapter "
                  "(LoRA, ...) or EMA weights: dropping them loses what was trained (pttui "
                  "does not merge adapters into the base weights)" if adapters else ""))
        ctx.measure([drop], f"drop {_n(len(others), 'unexpected key')}",
                    "high" if safe else "medium", safe, why, "drop", after_map=after_map,
                    affected=[(k, "") for k in others])
    left = [k for k in real_missing if k not in set(head or ())]
    if left and not bad:
        ctx.measure([AcceptMissing(tuple(left))],
                    f"accept {_n(len(left), 'missing key')} (strict=False)", "low", False,
                    "they stay at the model's initialisation", "accept")


def _mismatched(ctx: _Ctx, bad: list[str]) -> None:
    """Shape mismatches confined to the model's head or input layer: drop, accept."""
    expected_keys = list(ctx.target.tensors)
    modules = list(dict.fromkeys(k.rpartition(".")[0] for k in bad))
    last = expected_keys[-1].rpartition(".")[0] if expected_keys else ""
    first = expected_keys[0].rpartition(".")[0] if expected_keys else ""
    heads = [m for m in modules if m == last or _HEAD_NAMES.match(m)]
    inputs = [m for m in modules if m not in heads and (m == first or _INPUT_NAMES.match(m))]
    confined = len(modules) <= 2 and len(heads) + len(inputs) == len(modules)
    what = ("head" if not inputs else "input layer" if not heads else "input layer and head")
    title = (f"drop the mismatched {what} `{', '.join(sorted(modules))}` and train it anew"
             if confined else f"drop {_n(len(bad), 'key')} whose shapes differ")
    head_keys = [k for k in bad if k.rpartition(".")[0] in heads] if confined else []
    expected = ctx.target.tensors
    total = ctx.base.coverage_params[1] or 1
    head_size = sum(_numel(expected[k]) for k in head_keys)
    input_size = sum(_numel(expected[k]) for k in bad if k not in set(head_keys))
    safe = confined and head_size <= MAX_HEAD * total and input_size <= MAX_INPUT * total
    drop = Drop(_exact_regex(bad), kind="regex")
    ctx.measure([drop, AcceptMissing(tuple(bad))], title,
                "high" if safe else "medium" if confined else "low", safe,
                "their shapes differ from the model's: they cannot be loaded; the model keeps "
                "its fresh initialisation for them"
                + ("" if safe or not confined else
                   f" ({(head_size + input_size) / total:.0%} of the model: too much to "
                   "leave untrained without a look)"),
                "head" if confined else "drop", after_map=_without(ctx.tensors, bad),
                affected=[(k, "") for k in bad], head_keys=head_keys)


def _head_keys(missing: list[str], target) -> list[str] | None:
    """``missing`` when it is the model's output layer: the last keys of the model (benign
    and tied keys aside), or modules named like a head; else None."""
    expected = target.tensors
    want = set(missing)
    order = [k for k in expected if k in want or not _ignorable(k, target)]
    tail = order[len(order) - len(missing):] if len(missing) <= len(order) else []
    modules = {k.rpartition(".")[0] for k in missing}
    if set(tail) == want and (len(modules) <= 2 or all(_HEAD_NAMES.match(m) for m in modules)):
        return [k for k in order if k in want]
    if len(modules) <= 2 and all(_HEAD_NAMES.match(m) for m in modules):
        return [k for k in order if k in want]
    return None


def _ignorable(key: str, target) -> bool:
    return key in target.tied or key in target.auto_fill or is_benign(key,
                                                                    target.tensors.get(key))


def _aliases(target) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, first in target.tied.items():
        out.setdefault(first, []).append(alias)
    return out


def _numel(meta: TensorMeta) -> int:
    n = 1
    for d in meta.shape:
        n *= d
    return n


_n = hz.counted


def _exact_regex(keys: list[str]) -> str:
    return "^(?:" + "|".join(re.escape(k) for k in keys) + ")$"


_GLOB_SPECIAL = re.compile(r"[*?\[\]]")
# Adapter weights of any kind (PEFT LoRA, kohya/diffusers lora_up/down, LoHa, LoKr, OFT,
# IA3) and EMA copies: what a user trained or keeps on purpose, never dropped unasked.
_ADAPTER = re.compile(r"lora|hada_|lokr_|oft_|ia3_|adapter|(^|[._])ema([._]|$)", re.I)


def _drop_op(keys: list[str], tensors: dict[str, TensorMeta]
             ) -> tuple[Drop, dict[str, TensorMeta]]:
    """A drop that removes exactly ``keys`` from ``tensors``, as short as it can be
    (``*.num_batches_tracked``, ``extra.*``), and the key map after it."""
    after = _without(tensors, keys)
    names = "\n" + "\n".join(tensors) + "\n"
    exact = names.count("\n") == len(tensors) + 1  # no key holds a newline
    leaves = {k.rpartition(".")[2] for k in keys}
    dotted = all("." in k for k in keys)
    if exact and dotted and len(leaves) == 1:
        leaf = next(iter(leaves))
        if leaf and not _GLOB_SPECIAL.search(leaf) and \
                names.count("." + leaf + "\n") == len(keys):
            return Drop(f"*.{leaf}"), after
    if exact and dotted:
        tops = {k.partition(".")[0] for k in keys}
        if len(tops) == 1:
            top = next(iter(tops))
            if top and not _GLOB_SPECIAL.search(top) and \
                    names.count("\n" + top + ".") == len(keys):
                return Drop(f"{top}.*"), after
    if 1 < len(leaves) <= 8 and all(leaves):
        rx = r"(?:^|\.)(?:" + "|".join(re.escape(x) for x in sorted(leaves)) + ")$"
        hit = re.compile(rx)
        if not any(hit.search(k) for k in after):
            return Drop(rx, kind="regex"), after
    return Drop(_exact_regex(keys), kind="regex"), after


def _without(tensors: dict[str, TensorMeta], keys: list[str]) -> dict[str, TensorMeta]:
    out = dict(tensors)
    for k in keys:
        out.pop(k, None)
    return out


def _pattern_text(drop: Drop) -> str:
    if drop.kind == "glob":
        return f"`{drop.pattern}`"
    return "listed by name" if drop.pattern.startswith("^(?:") else f"`{drop.pattern}`"
