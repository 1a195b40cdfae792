"""The key tree as a front pages through it: rows on demand, a filter, target status.

A 100,000-key file must stay responsive. The tree and a sorted key list are built
once per recipe state (in a worker); after that, expanding a group or typing one
filter keystroke touches only the rows shown. Counts per group under a filter or
per status come from bisecting sorted key lists (a group ``a.b`` holds exactly the
keys in ``["a.b.", "a.b/")``), never from walking sub-trees. No UI code here.
"""

from __future__ import annotations

import bisect
import fnmatch
import gc
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pttui.core.read.keytree import Entry, KeyNode, build_tree, compress
from pttui.core.base.meta import TensorMeta

# Status of a key against a target; the order is the priority a group shows.
SHAPE, MISSING, UNEXPECTED, ACCEPTED, AUTO, OK = (
    "shape", "missing", "unexpected", "accepted", "auto", "ok")
STATUSES = (SHAPE, MISSING, UNEXPECTED, ACCEPTED, AUTO, OK)
_GLOB_CHARS = "*?["
BIG_GROUP = 2000  # children above which a filtered group is listed from the matches


@dataclass
class KeyIndex:
    """One key map (plus the target's missing keys) ready to page through."""

    root: KeyNode
    keys: list[str]  # every key, sorted
    lowered: list[str] | None  # ``keys`` lower-cased; None when they all are already
    status: dict[str, str] = field(default_factory=dict)  # empty without a target
    by_status: dict[str, list[str]] = field(default_factory=dict)  # status -> sorted keys
    model_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)  # shape mismatches

    @property
    def has_target(self) -> bool:
        return bool(self.status)


@dataclass
class Row:
    """One visible line: a group (maybe ``{0..31}``, a run of equal blocks) or a key."""

    label: str
    node: KeyNode
    repeat: int = 1
    count: int = 0  # keys under it (that match the filter, when one is set)
    counts: dict[str, int] = field(default_factory=dict)  # status -> keys, with a target
    status: str | None = None
    paths: tuple[str, ...] = ()  # a collapsed run: the path of this row in every block

    @property
    def is_leaf(self) -> bool:
        return self.node.tensor is not None and not self.node.children

    @property
    def key(self) -> str:
        return self.node.path


def build_index(tensors: Mapping[str, TensorMeta], report: Any = None,
                target: Any = None) -> KeyIndex:
    """Index ``tensors``; with a report, add the target's missing keys where they belong
    (in the model's order) and mark every key's status."""
    enabled = gc.isenabled()
    gc.disable()  # a tree of 100,000 nodes: the cyclic GC would rescan them repeatedly
    try:
        status: dict[str, str] = {}
        shown: dict[str, TensorMeta] = dict(tensors)
        model_shape: dict[str, tuple[int, ...]] = {}
        if report is not None and target is not None:
            shown, status, model_shape = _with_target(tensors, report, target)
        root = build_tree(shown)
        keys = sorted(shown)
        by_status: dict[str, list[str]] = {s: [] for s in STATUSES} if status else {}
        for k in keys:  # sorted order in, sorted order out
            s = status.get(k)
            if s is not None:
                by_status[s].append(k)
        lowered = [k.lower() for k in keys]
        same = all(a is b or a == b for a, b in zip(keys, lowered))
        return KeyIndex(root, keys, None if same else lowered, status, by_status, model_shape)
    finally:
        if enabled:
            gc.enable()


def _with_target(tensors: Mapping[str, TensorMeta], report: Any, target: Any):
    expected: Mapping[str, TensorMeta] = target.tensors
    accepted, auto = set(report.accepted_missing), set(report.auto_filled)
    status = {k: UNEXPECTED for k in report.unexpected}
    status.update((k, OK) for k in report.matched)
    model_shape = {}
    for m in report.shape_mismatch:
        status[m.key] = SHAPE
        model_shape[m.key] = tuple(m.model_shape)
    for k in report.missing:
        status[k] = ACCEPTED if k in accepted else MISSING
    for k in auto:
        status[k] = AUTO
    shown: dict[str, TensorMeta] = {}
    for k, meta in expected.items():  # the model's order, so missing keys sit in place
        have = tensors.get(k)
        if have is not None:
            shown[k] = have
        elif k in status:
            shown[k] = meta
    for k, meta in tensors.items():
        shown.setdefault(k, meta)
    return shown, status, model_shape


# -- filters -------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyFilter:
    """Substring (case-blind) or, when the text holds ``* ? [``, a glob on the whole key."""

    text: str

    @property
    def is_glob(self) -> bool:
        return any(c in self.text for c in _GLOB_CHARS)


def matching(index: KeyIndex, flt: KeyFilter | None,
             previous: tuple[KeyFilter, list[str]] | None = None) -> list[str] | None:
    """Sorted keys matching ``flt`` (None: no filter). Typing on narrows the last result:
    a substring that extends the previous one searches only its matches."""
    if flt is None or not flt.text:
        return None
    if flt.is_glob:
        rx = re.compile(fnmatch.translate(flt.text), re.IGNORECASE)
        return [k for k in index.keys if rx.match(k)]
    needle = flt.text.lower()
    keys = index.keys
    if previous is not None and not previous[0].is_glob \
            and needle.startswith(previous[0].text.lower()):
        keys = previous[1]
    if index.lowered is None:  # every key is lower case already: no second list to zip
        return [k for k in keys if needle in k]
    if keys is index.keys:
        return [k for k, low in zip(keys, index.lowered) if needle in low]
    return [k for k in keys if needle in k.lower()]


def _span(keys: list[str], node: KeyNode) -> int:
    """How many of the sorted ``keys`` lie in ``node`` (itself or below)."""
    p = node.path
    if not p:
        return len(keys)
    below = bisect.bisect_left(keys, p + "/") - bisect.bisect_left(keys, p + ".")
    i = bisect.bisect_left(keys, p)
    return below + (1 if i < len(keys) and keys[i] == p else 0)


def _counts(index: KeyIndex, node: KeyNode) -> dict[str, int]:
    out = {}
    for s, keys in index.by_status.items():
        n = _span(keys, node)
        if n:
            out[s] = n
    return out


def summary(counts: dict[str, int]) -> str | None:
    """The status a group shows: its worst problem, else ok."""
    return next((s for s in STATUSES if counts.get(s)), None)


def rows(index: KeyIndex, node: KeyNode, matched: list[str] | None = None) -> Iterator[Row]:
    """The children of ``node`` as rows, lazily (a caller takes a chunk at a time).

    A run of equal numbered blocks stays one row only while its members agree on the
    filter count and the status counts: a run hiding a block that differs would lie.
    Under a filter, a group of many children lists only those holding matches, found
    from the sorted matches (so 100,000 children cost what the shown rows cost).
    """
    if matched is not None and len(node.children) > BIG_GROUP:
        yield from _rows_from_matches(index, node, matched)
        return
    for e in _entries(node):
        members = [e.node]
        if e.repeat > 1:
            start = int(e.node.name)
            members = [node.children[str(start + i)] for i in range(e.repeat)]
        facts = [_facts(index, m, matched) for m in members]
        if e.repeat > 1 and all(f == facts[0] for f in facts) and facts[0][0]:
            row = _row(_fold(index, compress(e), matched), facts[0][0] * e.repeat,
                       {s: n * e.repeat for s, n in facts[0][1].items()})
            tail = row.node.path[len(e.node.path):]
            row.paths = tuple(m.path + tail for m in members)
            yield row
            continue
        for m, (count, counts) in zip(members, facts):
            if count:
                yield _row(_fold(index, compress(Entry(m.name, m)), matched), count, counts)


def _entries(node: KeyNode) -> Iterator[Entry]:
    """``keytree.entries``, lazily: a group of 100,000 children yields its first rows
    without walking the rest."""
    kids = iter(node.children.values())
    first = next(kids, None)
    while first is not None:
        run = [first]
        nxt = next(kids, None)
        if first.name.isdigit() and first.children:
            while (nxt is not None and nxt.name.isdigit() and nxt.sig == first.sig
                   and int(nxt.name) == int(run[-1].name) + 1):
                run.append(nxt)
                nxt = next(kids, None)
        if len(run) > 1:
            yield Entry(f"{{{first.name}..{run[-1].name}}}", first, len(run))
        else:
            yield Entry(first.name, first)
        first = nxt


def _rows_from_matches(index: KeyIndex, node: KeyNode, matched: list[str]) -> Iterator[Row]:
    """Children of a big group that hold matches, in key order, one bisect per child."""
    base = node.path + "." if node.path else ""
    pos = bisect.bisect_left(matched, base) if base else 0
    end = bisect.bisect_left(matched, node.path + "/") if base else len(matched)
    seen: set[str] = set()
    while pos < end:
        key = matched[pos]
        if not key.startswith(base):
            pos += 1
            continue
        name = key[len(base):].split(".", 1)[0]
        child = node.children.get(name)
        if child is not None and name not in seen:
            seen.add(name)
            count, counts = _facts(index, child, matched)
            if count:
                yield _row(_fold(index, compress(Entry(name, child)), matched), count, counts)
        jump = bisect.bisect_left(matched, f"{base}{name}/", pos + 1)
        pos = jump if jump > pos else pos + 1


def _fold(index: KeyIndex, e: Entry, matched: list[str] | None) -> Entry:
    """Under a filter, also fold groups with one matching child: ``a.b.c.weight``."""
    if matched is None:
        return e
    label, node = e.label, e.node
    while node.tensor is None and node.children:
        hits = [c for c in node.children.values() if _span(matched, c)]
        if len(hits) != 1:
            break
        label, node = f"{label}.{hits[0].name}", hits[0]
    return Entry(label, node, e.repeat)


def _facts(index: KeyIndex, node: KeyNode, matched: list[str] | None) -> tuple[int, dict]:
    count = node.count if matched is None else _span(matched, node)
    if not count or not index.by_status:
        return count, {}
    if matched is None:
        return count, _counts(index, node)
    # under a filter, status counts of the matching keys only (few: read them one by one)
    counts: dict[str, int] = {}
    lo = bisect.bisect_left(matched, node.path + ".") if node.path else 0
    hi = bisect.bisect_left(matched, node.path + "/") if node.path else len(matched)
    keys = matched[lo:hi] + ([node.path] if node.tensor is not None else [])
    if len(keys) > 2000:
        return count, _counts(index, node)
    for k in keys:
        s = index.status.get(k)
        if s:
            counts[s] = counts.get(s, 0) + 1
    return count, counts


def _row(e: Entry, count: int, counts: dict[str, int]) -> Row:
    return Row(e.label, e.node, e.repeat, count, counts, summary(counts))


def find(index: KeyIndex, key: str) -> KeyNode | None:
    """The node for a dotted key, or None."""
    node = index.root
    for part in key.split(".", 64):
        node = node.children.get(part)
        if node is None:
            return None
    return node


def keys_under(index: KeyIndex, node: KeyNode, status: str | None = None) -> list[str]:
    """Every key in ``node`` (sorted), or those with ``status``."""
    pool = index.keys if status is None else index.by_status.get(status, [])
    if not node.path:
        return list(pool)
    lo = bisect.bisect_left(pool, node.path + ".")
    hi = bisect.bisect_left(pool, node.path + "/")
    out = pool[lo:hi]
    i = bisect.bisect_left(pool, node.path)
    if i < len(pool) and pool[i] == node.path:
        out = [node.path] + out
    return out


def row_keys(index: KeyIndex, row: Row, status: str | None = None) -> list[str]:
    """Every key a row stands for: all blocks of a collapsed run, else its node's keys."""
    if not row.paths:
        return keys_under(index, row.node, status)
    out: list[str] = []
    for path in row.paths:
        node = find(index, path)
        if node is not None:
            out += keys_under(index, node, status)
    return out


def drop_pattern(row: Row) -> str:
    """The regex a Drop op needs to remove exactly what ``row`` shows (a key, a group,
    or every block of a collapsed run)."""
    alt = "|".join(re.escape(p) for p in (row.paths or (row.key,)))
    return f"^(?:{alt})$" if row.is_leaf else f"^(?:{alt})\\."


def rename_seed(row: Row) -> tuple[str, str]:
    """A rename regex and replacement to start editing from: the row's own prefix."""
    path = row.paths[0] if row.paths else row.key
    return "^" + re.escape(path) + r"(?=\.|$)", path
