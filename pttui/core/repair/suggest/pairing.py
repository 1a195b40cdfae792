"""Structural pairing: leftover keys paired by unique dotted suffix, or by order among
keys of one shape, and the rename rules that explain the pairs offered as steps.

Split from suggest.py. Nothing is guessed: where several same-shaped keys could pair
either way and no one rule settles it, no step is marked safe.
"""

from __future__ import annotations

import re
from typing import Any

from pttui.core.compare.strict import Report
from pttui.core.recipe.recipe import KeyMap, RegexRename
from pttui.core.repair.suggest.measure import _Ctx
from pttui.core.repair.suggest.rules import _candidate_rules, explains, _readable

_SUFFIX_LIMIT = 20_000  # suffix alignment indexes every suffix: only up to this many keys


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
        hits = explains(pattern, repl, pairs)
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
        if len(explains(pattern, repl, pairs)) == len(pairs):
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
