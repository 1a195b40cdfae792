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
"""

from __future__ import annotations

import functools
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pttui.core.compare import UNKNOWN, Report, _benign, compare, group_keys
from pttui.core.meta import TensorMeta
from pttui.core.modmeta import carry_metadata
from pttui.core.nogc import gc_paused
from pttui.core.recipe import (AcceptMissing, AddPrefix, Drop, KeyMap, Op, Recipe,
                               RecipeConflict, RegexRename, StripPrefix)

WRAPPERS = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.",
            "model.", "base_model.model.", "net.", "network.", "backbone.", "encoder.")
KNOWN_RENAMES = ((r"\.gamma$", ".weight", "LayerNorm `gamma` -> `weight` (old naming)"),
                 (r"\.beta$", ".bias", "LayerNorm `beta` -> `bias` (old naming)"))
# a module named like an output layer (first component of its path, or right under one
# wrapper such as `backbone.` / `model.`)
_HEAD_NAMES = re.compile(r"^(?:[^.]+\.)?(fc|head|heads|classifier|cls|logits|lm_head|"
                         r"last_linear|proj_head|score|pred|predictions)(\.|$)")
_INPUT_NAMES = re.compile(r"^(?:[^.]+\.)?(conv1|conv_proj|conv_stem|stem|patch_embed|embed|"
                          r"embeddings|wte|word_embeddings|features\.0|input)(\.|$)")
_RAISES = ("prefix", "rename", "structural")  # kinds that must raise coverage
MAX_HEAD = 0.5  # a "head" holding more of the model than this is no head
MAX_INPUT = 0.10  # an input layer dropped beyond this leaves too much untrained (as --auto)
_SUFFIX_LIMIT = 20_000  # suffix alignment indexes every suffix: only up to this many keys
_RULE_SAMPLE = 2_000  # pairs a rule is inferred from (then checked on all pairs)


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
    # prefix | rename | structural | head | tied | benign | drop | accept
    kind: str = "rename"
    affected: list[tuple[str, str]] = field(default_factory=list)  # (old, new or "")
    # model keys of the output layer this step leaves to train anew (a replaced or
    # missing head): ``fix --auto`` does not count them as "uninitialised"
    head_keys: list[str] = field(default_factory=list)

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


class _Ctx:
    """One suggest() run: the base comparison and the steps measured so far."""

    def __init__(self, tensors, target, base: Report, accepted, metadata) -> None:
        self.tensors, self.target, self.base = tensors, target, base
        self.accepted, self.metadata = tuple(accepted), metadata
        self.found: list[Suggestion] = []
        self.containers: list = []
        self.seen: set[str] = set()
        self._unexpected: set[str] | None = None

    @property
    def unexpected(self) -> set[str]:
        if self._unexpected is None:
            self._unexpected = set(self.base.unexpected)
        return self._unexpected

    def measure(self, ops: list[Op], title: str, confidence: str, safe: bool, why: str,
                kind: str, after_map: dict[str, TensorMeta] | None = None,
                check=None, affected: list[tuple[str, str]] | None = None,
                head_keys: list[str] | None = None) -> Suggestion | None:
        """Apply ``ops`` (``after_map``: their result, when already known), compare, and
        keep the step if it helps. ``check(affected, after)`` may veto ``safe``."""
        if title in self.seen:
            return None
        self.seen.add(title)
        tensors, base = self.tensors, self.base
        try:
            if after_map is None:
                after_map = tensors
                for op in ops:
                    after_map = apply_op(op, after_map)
        except RecipeConflict:
            return None
        acc = self.accepted + tuple(k for op in ops if isinstance(op, AcceptMissing)
                                    for k in op.keys)
        meta = self.metadata if self.metadata is UNKNOWN else carry_metadata(
            self.metadata, Recipe(list(ops)))
        after = compare(after_map, self.target, accepted_missing=acc, ckpt_metadata=meta)
        (bp, bk), (ap, ak) = _score(base), _score(after)
        if ap < bp or ak < bk:
            return None  # a suggestion never lowers coverage
        if kind in _RAISES:
            if (ap, ak) == (bp, bk):
                return None
        elif (ap, ak) == (bp, bk) and _problems(after) >= _problems(base):
            return None
        if affected is None:
            affected = _affected(tensors, after_map)
        if safe and check is not None and not check(affected, after):
            safe, confidence = False, "low"
        step = Suggestion(ops, title, base, after, confidence, safe, why, kind, affected,
                          list(head_keys or ()))
        self.found.append(step)
        return step


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
    for op, title, why in _prefix_candidates(tensors, expected, base):
        ctx.measure([op], title, "high", True, why, "prefix")
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
    if not any(s.kind == "prefix" for s in ctx.found):
        _structural(ctx, known)  # (after a prefix step, the next round pairs what is left)
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
    found.sort(key=lambda s: (_score(s.after), -_problems(s.after)), reverse=True)
    return found[:limit]


def _variant(ctx: _Ctx) -> str | None:
    """Why the checkpoint is another variant of the model, or None: judged on the keys
    as they are, or, when none match by name yet, after the best prefix step."""
    from pttui.core.diagnosis import _variant_reason

    report = ctx.base
    if not report.matched:
        prefixes = [s for s in ctx.found if s.kind == "prefix"]
        if not prefixes:
            return None
        report = max(prefixes, key=lambda s: _score(s.after)).after
    return _variant_reason(report, ctx.target)


# -- applying ops fast (same result as Op.apply) ---------------------------------------

# The rename patterns this module builds: literal text (escaped), ``(\d+)`` groups, a
# component-start anchor and a component-end lookahead. None of them can match across
# a newline, so one ``re.sub`` over the joined names (MULTILINE) renames each key
# exactly as ``re.sub`` on each key alone would.
_FAST_PATTERN = re.compile(
    r"(?:\(\?:\(\?<=\\\.\)\|\^\)|\(\?<=\\\.\)|\^)?"
    r"(?:\\[^A-Za-z0-9\n]|[^\\()\[\]{}?*+|^$.&~#\s-]|\(\\d\+\))+"
    r"(?:\(\?=\\\.\|\$\)|\$)?")


def apply_op(op: Op, tensors: dict[str, TensorMeta]) -> dict[str, TensorMeta]:
    """``op.apply(tensors)``, faster for the renames suggestions are made of: one regex
    pass over all names instead of one call per key. Anything else goes to
    ``op.apply``; so does a rename that would merge two keys (its RecipeConflict)."""
    keys = list(tensors)
    if isinstance(op, RegexRename) and op.count == 0 and _FAST_PATTERN.fullmatch(op.pattern):
        joined = "\n".join(keys)
        if joined.count("\n") == len(keys) - 1:
            new = _joined_regex(op.pattern).sub(op.replacement, joined).split("\n")
            if len(new) == len(keys):
                return _rebuilt(op, tensors, new)
    elif isinstance(op, StripPrefix):
        p, n = op.prefix, len(op.prefix)
        return _rebuilt(op, tensors, [k[n:] if k.startswith(p) else k for k in keys])
    elif isinstance(op, AddPrefix) and op.only is None:
        p = op.prefix
        return _rebuilt(op, tensors, [p + k for k in keys])
    elif isinstance(op, KeyMap):
        get = op.mapping.get
        return _rebuilt(op, tensors, [get(k, k) for k in keys])
    return op.apply(tensors)


_LITERAL = r"(?:\\[^A-Za-z0-9\n]|[^\\()\[\]{}?*+|^$.&~#\s-])+"
_ANCHORED = re.compile(r"(\(\?:\(\?<=\\\.\)\|\^\)|\(\?<=\\\.\))(" + _LITERAL + ")(.*)", re.S)


@functools.lru_cache(maxsize=64)
def _joined_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (of the _FAST_PATTERN form) for names joined by newlines. A leading
    component anchor moves behind the first literal text, so the regex engine scans
    for that text (several times faster on 100,000 names); same matches."""
    m = _ANCHORED.fullmatch(pattern)
    if m:
        anchor, lit, rest = m.groups()
        behind = r"(?<![^.\n]" if anchor.startswith("(?:") else r"(?<=\."
        pattern = lit + behind + lit + ")" + rest
    return re.compile(pattern, re.M)


def _rebuilt(op: Op, tensors, new: list[str]) -> dict[str, TensorMeta]:
    out = dict(zip(new, tensors.values()))
    if len(out) != len(tensors):
        return op.apply(tensors)  # raises the RecipeConflict that names both keys
    return out


def _affected(before: dict[str, TensorMeta], after: dict[str, TensorMeta]
              ) -> list[tuple[str, str]]:
    """(old, new) for renamed keys, (old, "") for dropped ones, in checkpoint order."""
    if len(before) == len(after) and all(map(operator.is_, before.values(), after.values())):
        return [(o, n) for o, n in zip(before, after) if o != n]  # renames keep the order
    new_by_source = {m.key: k for k, m in after.items()}
    out = []
    for old, meta in before.items():
        new = new_by_source.get(meta.key, "")
        if new != old:
            out.append((old, new))
    return out


# -- prefixes ------------------------------------------------------------------------

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
    for p, _n in _outer(strip, 5):
        yield (StripPrefix(p), f"strip prefix `{p}`",
               f"checkpoint keys match the model once `{p}` is removed"
               + (" (a training wrapper)" if p in WRAPPERS else ""))
    for p, _n in _outer(add, 3):
        yield (AddPrefix(p), f"add prefix `{p}`",
               f"the model's keys are the checkpoint's keys under `{p}`")
    joined = "\n".join(base.unexpected)
    for w in WRAPPERS:  # a wrapper in the middle of keys (model.module.x, _orig_mod inside)
        if f".{w}" in joined:
            pattern = rf"(?<=\.){re.escape(w)}"
            yield (RegexRename(pattern, ""), f"remove wrapper `{w}` inside keys",
                   f"`{w}` sits inside the keys (a wrapped submodule)")


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


# -- structural pairing ------------------------------------------------------------------

def _structural(ctx: _Ctx, known: list[tuple[str, str]]) -> None:
    """Pair leftover keys (by unique suffix, else by order among keys of one shape) and
    offer the general rename rules that explain the pairs.

    Works on the names as they will be once the known renames offered alongside are
    applied (``ln.gamma`` reads as ``ln.weight``), ignores benign keys while pairing
    (a rule then renames them too) and refuses ambiguity: a pairing decided only by
    order among same-shaped keys becomes a safe step only when one rule explains every
    pair in that group."""
    base, tensors, expected = ctx.base, ctx.tensors, ctx.target.tensors
    benign_u = set(base.benign_unexpected)
    skip_m = set(base.benign_missing) | set(base.tied_missing) | set(base.accepted_missing)
    subs = [(re.compile(p), r) for p, r in known]

    def norm(k: str) -> str:
        for rx, r in subs:
            k = rx.sub(r, k)
        return k

    view: dict[str, str] = {}  # name after the known renames -> current key
    for u in base.unexpected:
        if u in benign_u:
            continue
        v = norm(u) if subs else u
        want = expected.get(v)
        if (want is not None and want.shape == tensors[u].shape) or v in view:
            continue  # a known rename fixes it already (or two keys would collide)
        view[v] = u
    missing = [m for m in base.missing if m not in skip_m]
    if not view or not missing:
        return
    one = _one_rule(view, missing, tensors, expected)
    if one is not None:  # every leftover key lines up, and one rule renames them all
        _offer_rules(ctx, [(one[0], one[1], list(range(len(view))), True)], True, subs,
                     norm)
        return
    shape_u = {v: tensors[u].shape for v, u in view.items()}
    sfx = (_suffix_pairs(list(view), missing, shape_u, expected)
           if len(view) <= _SUFFIX_LIMIT and len(missing) <= _SUFFIX_LIMIT else [])
    used_u = {u for u, _ in sfx}
    used_m = {m for _, m in sfx}
    ordered, group_of = _order_pairs([v for v in view if v not in used_u],
                                     [m for m in missing if m not in used_m],
                                     shape_u, expected)
    pairs = sfx + ordered
    if not pairs:
        return
    # ambiguous groups: same-shape (and same-leaf) runs of two or more, paired by order
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_of, start=len(sfx)):
        groups.setdefault(g, []).append(i)
    ambiguous = {g for g, members in groups.items() if len(members) > 1}
    pair_group = [None] * len(sfx) + list(group_of)

    rules = _candidate_rules(pairs)
    explained_by_any: set[int] = set()
    offered: list[tuple[str, str, list[int], bool]] = []
    for pattern, repl in rules:
        hits = _explains(pattern, repl, pairs)
        if len(hits) < 2:
            continue
        hit_set = set(hits)
        settled = all(all(i in hit_set for i in groups[g])
                      for g in {pair_group[i] for i in hits} if g in ambiguous)
        offered.append((pattern, repl, hits, settled))
        explained_by_any.update(hits)
    one_rule = len(offered) == 1 and len(offered[0][2]) == len(pairs)
    check = _offer_rules(ctx, offered, one_rule, subs, norm)
    # pairs no rule explains: explicit renames, only where shape or suffix decides them
    rest = {view[u]: m for i, (u, m) in enumerate(pairs)
            if i not in explained_by_any and pair_group[i] not in ambiguous}
    if rest:
        (old, new), = list(rest.items())[:1]
        title = (f"rename {len(rest)} keys one by one" if len(rest) > 1
                 else f"rename `{old}` -> `{new}`")
        ctx.measure([KeyMap(rest)], title, "medium" if len(rest) <= 3 else "low",
                    len(rest) <= 3, "each pairs with a missing key of the same shape and "
                    "name suffix that nothing else could pair with", "structural",
                    check=check)


def _one_rule(view: dict[str, str], missing: list[str], tensors, expected
              ) -> tuple[str, str] | None:
    """The fast, common case: both leftover lists line up one to one in order with equal
    shapes, and one rule turns every unexpected name into its missing one."""
    if len(view) != len(missing) or len(view) < 2:
        return None
    if [tensors[u].shape for u in view.values()] != [expected[m].shape for m in missing]:
        return None
    pairs = list(zip(view, missing))
    for pattern, repl in _candidate_rules(pairs, top=2):
        if len(_explains(pattern, repl, pairs)) == len(pairs):
            return pattern, repl
    return None


def _offer_rules(ctx: _Ctx, offered, one_rule: bool, subs, norm):
    """Measure each rule (pattern, repl, explained pairs, settled); a settled rule is
    safe when every key it renames lands on a model key of its shape. Returns that
    check, for the explicit renames that follow."""
    base, tensors, expected = ctx.base, ctx.tensors, ctx.target.tensors
    unexpected, benign_u = ctx.unexpected, set(base.benign_unexpected)

    def check(affected: list[tuple[str, str]], after: Report) -> bool:
        """Every key the step renames was unexpected, and lands on a model key of its
        shape (benign keys may land anywhere)."""
        if not all(map(unexpected.__contains__, [o for o, _ in affected])):
            return False  # it would rename a key that already loads
        new_names = {n: o for o, n in affected if n}
        if any(m.key in new_names for m in after.shape_mismatch):
            return False
        for n in after.unexpected:
            old = new_names.get(n)
            if old is None or old in benign_u:
                continue
            want = expected.get(norm(n)) if subs else None
            if want is None or want.shape != tensors[old].shape:
                return False
        return True

    known = [(rx.pattern, r) for rx, r in subs]
    for pattern, repl, hits, settled in offered:
        n = len(hits)
        if settled:
            conf = "high" if one_rule else "medium"
            why = (f"one rule renames {n} leftover keys that line up with the missing ones "
                   "by suffix, shape and order")
        else:
            conf = "low"
            why = (f"a guess: {n} keys paired only by their order among same-shaped keys, "
                   "and other rules pair them differently; check the renamed keys first")
        title = f"rename {_readable(pattern, repl)}"
        rule = RegexRename(pattern, repl)
        if ctx.measure([rule], title, conf, settled, why, "structural", check=check) is None \
                and known:
            # the renamed keys need the known renames too: offer them together
            names = " and ".join(f"`{p.strip(chr(92) + '.$')}`" for p, _ in known)
            ctx.measure([RegexRename(p, r) for p, r in known] + [rule],
                        f"{title} (with {names} renamed)", conf, settled, why, "structural",
                        check=check)
    return check


def _suffix_pairs(unexpected: list[str], missing: list[str], shape_u, expected
                  ) -> list[tuple[str, str]]:
    """detectron2-style: a missing key and an unexpected key pair when the longest dotted
    suffix (two components or more) the missing key shares with any unexpected key
    belongs to exactly one unexpected and one missing key of that shape. Ambiguous
    suffixes are refused, not guessed."""
    index_u: dict[str, list[str]] = {}
    for u in unexpected:
        parts = u.split(".")
        for i in range(len(parts) - 1):
            index_u.setdefault(".".join(parts[i:]), []).append(u)
    index_m: dict[str, list[str]] = {}
    for m in missing:
        parts = m.split(".")
        for i in range(len(parts) - 1):
            index_m.setdefault(".".join(parts[i:]), []).append(m)
    pairs, used = [], set()
    for m in missing:
        parts = m.split(".")
        shape = expected[m].shape
        for i in range(len(parts) - 1):  # longest suffix first, at least two components
            suffix = ".".join(parts[i:])
            hits = index_u.get(suffix)
            if not hits:
                continue
            hits = [u for u in hits if shape_u[u] == shape]
            back = [x for x in index_m[suffix] if expected[x].shape == shape]
            if len(hits) == 1 and len(back) == 1 and hits[0] not in used:
                pairs.append((hits[0], m))
                used.add(hits[0])
            break
    return pairs


def _order_pairs(unexpected: list[str], missing: list[str], shape_u, expected
                 ) -> tuple[list[tuple[str, str]], list[int]]:
    """Pair keys of one shape and one last component in order (then, for what is left,
    keys of one shape), where both sides hold the same number of them. Returns the
    pairs and, for each, the id of the group it was paired in."""
    pairs: list[tuple[str, str]] = []
    group_of: list[int] = []
    gid = 0
    for keyfn in (lambda k, s: (s, k.rpartition(".")[2]), lambda k, s: s):
        by_u: dict[Any, list[str]] = {}
        for u in unexpected:
            by_u.setdefault(keyfn(u, shape_u[u]), []).append(u)
        by_m: dict[Any, list[str]] = {}
        for m in missing:
            by_m.setdefault(keyfn(m, expected[m].shape), []).append(m)
        done_u, done_m = set(), set()
        for g, us in by_u.items():
            ms = by_m.get(g)
            if ms and len(ms) == len(us):
                gid += 1
                pairs += zip(us, ms)
                group_of += [gid] * len(us)
                done_u.update(us)
                done_m.update(ms)
        unexpected = [u for u in unexpected if u not in done_u]
        missing = [m for m in missing if m not in done_m]
        if not unexpected or not missing:
            break
    return pairs, group_of


def _candidate_rules(pairs: list[tuple[str, str]], top: int = 8) -> list[tuple[str, str]]:
    """The rules that explain most of a sample of the pairs, most common first."""
    step = max(1, len(pairs) // _RULE_SAMPLE)
    counts: Counter[tuple[str, str]] = Counter()
    for u, m in pairs[::step]:
        rule = _rule_for(u, m)
        if rule is not None:
            counts[rule] += 1
    return [rule for rule, _ in counts.most_common(top)]


def _explains(pattern: str, repl: str, pairs: list[tuple[str, str]]) -> list[int]:
    """Indices of the pairs ``pattern`` -> ``repl`` turns into each other (one pass)."""
    olds = [u for u, _ in pairs]
    joined = "\n".join(olds)
    if joined.count("\n") == len(olds) - 1:
        new = _joined_regex(pattern).sub(repl, joined).split("\n")
        if len(new) == len(olds):
            return [i for i, (n, (_, m)) in enumerate(zip(new, pairs)) if n == m]
    rx = re.compile(pattern)
    return [i for i, (u, m) in enumerate(pairs) if rx.sub(repl, u) == m]


def _rule_for(u: str, m: str) -> tuple[str, str] | None:
    """The rename of the span where ``u`` and ``m`` differ (whole components), with the
    numbers that carry over generalised: ``layer1.0.conv1_BN.weight`` ->
    ``layer1.0.bn1.weight`` gives ``conv(\\d+)_BN`` -> ``bn\\g<1>``."""
    up, mp = u.split("."), m.split(".")
    i = 0
    while i < min(len(up), len(mp)) and up[i] == mp[i]:
        i += 1
    j = 0
    while j < min(len(up), len(mp)) - i and up[-1 - j] == mp[-1 - j]:
        j += 1
    src = ".".join(up[i:len(up) - j])
    dst = ".".join(mp[i:len(mp) - j])
    if not src or "\n" in src or "\n" in dst:
        return None
    src_runs = [(d.start(), d.end(), d.group()) for d in re.finditer(r"\d+", src)]
    # numbers in dst that repeat a number of src, in order, become back-references
    carried: dict[int, int] = {}  # index into src_runs -> group number
    repl, pos, nxt = "", 0, 0
    for d in re.finditer(r"\d+", dst):
        k = next((x for x in range(nxt, len(src_runs)) if src_runs[x][2] == d.group()), None)
        repl += dst[pos:d.start()].replace("\\", "\\\\")
        if k is None:
            repl += d.group()
        else:
            carried[k] = len(carried) + 1
            repl += f"\\g<{carried[k]}>"
            nxt = k + 1
        pos = d.end()
    repl += dst[pos:].replace("\\", "\\\\")
    pattern, pos = "", 0
    for x, (s, e, text) in enumerate(src_runs):
        pattern += re.escape(src[pos:s]) + (r"(\d+)" if x in carried else text)
        pos = e
    pattern += re.escape(src[pos:])
    return r"(?:(?<=\.)|^)" + pattern + r"(?=\.|$)", repl  # _explains checks it


def _readable(pattern: str, repl: str) -> str:
    r"""`(?:(?<=\.)|^)conv(\d+)_BN(?=\.|$)`, `bn\g<1>` reads as `convN_BN` -> `bnN`."""
    src = re.sub(r"^\(\?:\(\?<=\\\.\)\|\^\)|^\(\?<=\\\.\)|\(\?=\\\.\|\$\)$", "", pattern)
    n = src.count(r"(\d+)")
    for g in range(1, n + 1):
        src = src.replace(r"(\d+)", "N" if n == 1 else f"N{g}", 1)
    src = re.sub(r"\\(.)", r"\1", src)
    dst = re.sub(r"\\g<(\d+)>", lambda mm: "N" if n == 1 else f"N{mm.group(1)}", repl)
    return f"`{src}` -> `{dst.replace(chr(92) * 2, chr(92))}`"


# -- clean-ups: tied aliases, heads, harmless keys, leftovers ----------------------------

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
        from pttui.core.diagnosis import _dropped_but_fit

        if _dropped_but_fit(tensors, target, head, ctx.containers):
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
        ctx.measure([drop], f"drop {_n(len(others), 'unexpected key')}", "medium", False,
                    "the model has no place for them (strict=False would ignore them too)",
                    "drop", after_map=after_map, affected=[(k, "") for k in others])
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
    return key in target.tied or key in target.auto_fill or _benign(key,
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


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _exact_regex(keys: list[str]) -> str:
    return "^(?:" + "|".join(re.escape(k) for k in keys) + ")$"


_GLOB_SPECIAL = re.compile(r"[*?\[\]]")


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
