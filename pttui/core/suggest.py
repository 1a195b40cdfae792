"""Ranked repair steps, each measured before it is offered.

Every candidate op is applied to the current key map (metadata only) and compared
with the target; only steps that raise coverage (or, for drops and acceptances,
keep it while removing a problem) are offered, best first. Nothing here is
quadratic: candidates come from dictionaries of prefixes and suffixes, not from
comparing every key with every other.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pttui.core.compare import UNKNOWN, Report, compare
from pttui.core.meta import TensorMeta
from pttui.core.modmeta import carry_metadata
from pttui.core.nogc import gc_paused
from pttui.core.recipe import (AcceptMissing, AddPrefix, Drop, KeyMap, Op, Recipe,
                               RecipeConflict, RegexRename, StripPrefix)

WRAPPERS = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.",
            "model.", "base_model.model.", "net.", "network.", "backbone.", "encoder.")
KNOWN_RENAMES = ((r"\.gamma$", ".weight", "LayerNorm `gamma` -> `weight` (old naming)"),
                 (r"\.beta$", ".bias", "LayerNorm `beta` -> `bias` (old naming)"))
_HEAD_NAMES = re.compile(r"(^|\.)(fc|head|heads|classifier|cls|logits|lm_head|last_linear|"
                         r"out|output|proj_head|top)(\.|$)")


@dataclass
class Suggestion:
    """One step: the ops it adds, what it does, and its measured effect."""

    ops: list[Op]
    title: str
    before: Report
    after: Report
    confidence: str  # high | medium | low
    safe: bool  # applied by `fix --auto`
    why: str = ""
    kind: str = "rename"  # prefix | rename | structural | head | benign | drop | accept
    affected: list[tuple[str, str]] = field(default_factory=list)  # (old, new or "")

    @property
    def effect(self) -> str:
        (b, total), (a, _) = self.before.coverage_keys, self.after.coverage_keys
        return f"{b}/{total} -> {a}/{total} keys"

    def to_json(self) -> dict:
        return {"title": self.title, "ops": [op.to_json() for op in self.ops],
                "effect": self.effect, "confidence": self.confidence, "safe": self.safe,
                "why": self.why, "kind": self.kind,
                "coverage_keys": [list(self.before.coverage_keys), list(self.after.coverage_keys)],
                "coverage_params": [list(self.before.coverage_params),
                                    list(self.after.coverage_params)]}


def _score(r: Report) -> tuple[int, int]:
    return (r.coverage_params[0], r.coverage_keys[0])


def _problems(r: Report) -> int:
    return len(r.missing) + len(r.unexpected) + len(r.shape_mismatch) - len(
        set(r.missing) & set(r.accepted_missing))


@gc_paused
def suggest(tensors: dict[str, TensorMeta], target, accepted: tuple[str, ...] = (),
            metadata: Any = UNKNOWN, limit: int = 8) -> list[Suggestion]:
    """Steps that improve ``tensors`` (the current key map) for ``target``, best first.
    ``metadata`` is the current ``_metadata`` (module versions), when known."""
    base = compare(tensors, target, accepted_missing=accepted, ckpt_metadata=metadata)
    if base.strict_ok:
        return []
    found: list[Suggestion] = []
    seen: set[str] = set()

    def measure(ops: list[Op], title: str, confidence: str, safe: bool, why: str,
                kind: str) -> None:
        if title in seen:
            return
        seen.add(title)
        try:
            after_map = tensors
            for op in ops:
                after_map = op.apply(after_map)
        except RecipeConflict:
            return
        acc = accepted + tuple(k for op in ops if isinstance(op, AcceptMissing) for k in op.keys)
        meta = metadata if metadata is UNKNOWN else carry_metadata(metadata, Recipe(list(ops)))
        after = compare(after_map, target, accepted_missing=acc, ckpt_metadata=meta)
        better = _score(after) > _score(base)
        cleaner = _score(after) == _score(base) and _problems(after) < _problems(base)
        if better or cleaner:
            found.append(Suggestion(ops, title, base, after, confidence, safe, why, kind,
                                    _affected(tensors, after_map)))

    expected = target.tensors
    for op, title, why in _prefix_candidates(tensors, expected, base):
        measure([op], title, "high", True, why, "prefix")
    joined = "\n".join(base.unexpected)
    for pattern, repl, title in KNOWN_RENAMES:
        # One search of all names at once; a key holding a newline may give a false
        # hit, which measure() then finds changes nothing and drops.
        if re.search(pattern, joined, re.M):
            measure([RegexRename(pattern, repl)], title, "high", True,
                    "old checkpoints name LayerNorm parameters gamma/beta", "rename")
    if not found:
        _structural(tensors, expected, base, measure)
    if not found:
        _heads_and_leftovers(tensors, target, base, measure)
    found.sort(key=lambda s: (_score(s.after), -_problems(s.after)), reverse=True)
    return found[:limit]


def _affected(before: dict[str, TensorMeta], after: dict[str, TensorMeta]
              ) -> list[tuple[str, str]]:
    """(old, new) for renamed keys, (old, "") for dropped ones, in checkpoint order."""
    new_by_source = {m.key: k for k, m in after.items()}
    out = []
    for old, meta in before.items():
        new = new_by_source.get(meta.key, "")
        if new != old:
            out.append((old, new))
    return out


# -- prefixes ------------------------------------------------------------------------

_SAMPLE = 4000  # keys looked at to propose prefixes; each proposal is then measured exactly


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
    """Strip or add prefixes that turn unexpected keys into expected ones."""
    strip: Counter[str] = Counter()
    for k in _sample(base.unexpected):
        for p in _heads(k):
            if k[len(p):] in expected:
                strip[p] += 1
    add: Counter[str] = Counter()
    for k in _sample(base.missing):
        for p in _heads(k):
            if k[len(p):] in tensors:
                add[p] += 1
    for p, _n in strip.most_common(5):
        yield (StripPrefix(p), f"strip prefix `{p}`",
               f"checkpoint keys match the model once `{p}` is removed"
               + (" (a training wrapper)" if p in WRAPPERS else ""))
    for p, _n in add.most_common(3):
        yield (AddPrefix(p), f"add prefix `{p}`",
               f"the model's keys are the checkpoint's keys under `{p}`")
    joined = "\n".join(base.unexpected)
    for w in WRAPPERS:  # a wrapper in the middle of keys (model.module.x, _orig_mod inside)
        if f".{w}" in joined:
            pattern = rf"(?<=\.){re.escape(w)}"
            yield (RegexRename(pattern, ""), f"remove wrapper `{w}` inside keys",
                   f"`{w}` sits inside the keys (a wrapped submodule)")


# -- structural pairing ------------------------------------------------------------------

def _structural(tensors, expected, base: Report, measure) -> None:
    """Pair leftover keys by shape and order; infer general rename rules from the pairs."""
    unexpected = [k for k in base.unexpected if k in tensors]
    missing = [k for k in base.missing if k in expected]
    if not unexpected or not missing:
        return
    pairs = _suffix_pairs(unexpected, missing, tensors, expected)
    if not pairs and len(unexpected) == len(missing) and all(
            tensors[u].shape == expected[m].shape for u, m in zip(unexpected, missing)):
        pairs = list(zip(unexpected, missing))
    if not pairs:
        return
    rules = _infer_rules(pairs)
    covered: set[str] = set()
    for (pattern, repl), members in rules:
        if len(members) >= 2:
            covered.update(members)
            measure([RegexRename(pattern, repl)], f"rename {_readable(pattern, repl)}", "medium",
                    True, f"one rule renames {len(members)} leftover keys that line up by "
                    "shape and order", "structural")
    rest = {u: m for u, m in pairs if u not in covered}
    if rest:
        title = (f"rename {len(rest)} keys one by one" if len(rest) > 1
                 else f"rename `{next(iter(rest))}` -> `{next(iter(rest.values()))}`")
        measure([KeyMap(rest)], title, "medium" if len(rest) <= 3 else "low", len(rest) <= 3,
                "these keys line up by shape and position with the missing ones", "structural")


def _readable(pattern: str, repl: str) -> str:
    r"""`(?<=\.)blocks\.(\d+)(?=\.|$)` -> `layers.N` reads as `blocks.N` -> `layers.N`."""
    src = re.sub(r"^\(\?:\(\?<=\\\.\)\|\^\)|^\(\?<=\\\.\)|\(\?=\\\.\|\$\)$", "", pattern)
    src = src.replace(r"(\d+)", "N").replace("\\", "")
    dst = re.sub(r"\\\d", "N", repl)
    return f"`{src}` -> `{dst}`"


def _suffix_pairs(unexpected, missing, tensors, expected) -> list[tuple[str, str]]:
    """detectron2-style: a model key whose dotted suffix is exactly one checkpoint key's
    suffix (or the reverse), shapes equal. Ambiguous suffixes are refused, not guessed."""
    index: dict[str, list[str]] = {}
    for u in unexpected:
        parts = u.split(".")
        for i in range(len(parts) - 1):
            index.setdefault(".".join(parts[i:]), []).append(u)
    pairs, used = [], set()
    for m in missing:
        parts = m.split(".")
        for i in range(len(parts) - 1):  # longest suffix first, at least two components
            hits = index.get(".".join(parts[i:]))
            if not hits:
                continue
            hits = [u for u in hits if u not in used and tensors[u].shape == expected[m].shape]
            if len(hits) == 1:
                pairs.append((hits[0], m))
                used.add(hits[0])
            break
    return pairs


def _infer_rules(pairs: list[tuple[str, str]]) -> list[tuple[tuple[str, str], list[str]]]:
    """Group pairs by the regex rule that explains them (digits generalised)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for u, m in pairs:
        rule = _rule_for(u, m)
        if rule and re.sub(rule[0], rule[1], u) == m:
            groups.setdefault(rule, []).append(u)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def _rule_for(u: str, m: str) -> tuple[str, str] | None:
    up, mp = u.split("."), m.split(".")
    i = 0
    while i < min(len(up), len(mp)) and up[i] == mp[i]:
        i += 1
    j = 0
    while j < min(len(up), len(mp)) - i and up[-1 - j] == mp[-1 - j]:
        j += 1
    src = ".".join(up[i:len(up) - j])
    dst = ".".join(mp[i:len(mp) - j])
    if not src:
        return None
    digits = re.findall(r"\d+", src)
    pattern, repl, groups = "", dst, 0
    pos = 0
    for d in re.finditer(r"\d+", src):
        pattern += re.escape(src[pos:d.start()]) + r"(\d+)"
        pos = d.end()
        groups += 1
        repl = repl.replace(d.group(), f"\\{groups}", 1) if d.group() in repl else repl
    pattern += re.escape(src[pos:])
    if digits and not any(f"\\{g}" in repl for g in range(1, groups + 1)):
        pattern, repl = re.escape(src), dst  # numbers don't carry over: rename literally
    left = r"(?:(?<=\.)|^)" if i == 0 else r"(?<=\.)"
    return left + pattern + r"(?=\.|$)", repl


# -- heads, leftovers ------------------------------------------------------------------

def _heads_and_leftovers(tensors, target, base: Report, measure) -> None:
    bad = [s.key for s in base.shape_mismatch]
    if bad:
        modules = {k.rsplit(".", 1)[0] for k in bad}
        expected_keys = list(target.tensors)
        last = expected_keys[-1].rsplit(".", 1)[0] if expected_keys else ""
        first = expected_keys[0].rsplit(".", 1)[0] if expected_keys else ""
        confined = len(modules) <= 2 and all(
            m in (last, first) or _HEAD_NAMES.search(m) for m in modules)
        title = (f"drop the mismatched head `{', '.join(sorted(modules))}` and train it anew"
                 if confined else f"drop {len(bad)} keys whose shapes differ")
        measure([Drop(_glob_any(bad), kind="regex"), AcceptMissing(tuple(bad))], title,
                "high" if confined else "low", confined,
                "their shapes differ from the model's: they cannot be loaded; the model "
                "keeps its fresh initialisation for them", "head" if confined else "drop")
    benign = [k for k in base.unexpected if k in set(base.benign_unexpected)]
    if benign:
        measure([Drop(_glob_any(benign), kind="regex")], f"drop {len(benign)} harmless extra "
                "keys", "high", True, "buffers the model does not keep (e.g. "
                "num_batches_tracked, position_ids)", "benign")
    if base.coverage_params[0] * 2 < base.coverage_params[1]:
        return  # most of the model is unmatched: dropping or accepting would hide a wrong file
    others = [k for k in base.unexpected if k not in set(benign)]
    if others:
        measure([Drop(_glob_any(others), kind="regex")], f"drop {len(others)} unexpected keys",
                "medium", False, "the model has no place for them (strict=False would ignore "
                "them too)", "drop")
    missing = [k for k in base.missing if k not in set(base.accepted_missing)]
    if missing and not bad:
        measure([AcceptMissing(tuple(missing))], f"accept {len(missing)} missing keys "
                "(strict=False)", "low", False, "they stay at the model's initialisation",
                "accept")


def _glob_any(keys: list[str]) -> str:
    return "^(?:" + "|".join(re.escape(k) for k in keys) + ")$"
