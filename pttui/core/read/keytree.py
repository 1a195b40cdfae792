"""Dotted keys as a tree for humans: groups with totals, repeated blocks collapsed.

``layers.0`` .. ``layers.31`` with the same structure, shapes and dtypes show as
one ``layers.{0..31}`` entry, the way transformers' load report does. All walks
are iterative; a key deeper than ``MAX_DEPTH`` parts keeps its tail as one name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from math import prod

from pttui.core.base.dtypes import itemsize_bits
from pttui.core.base.meta import TensorMeta

MAX_DEPTH = 64


@dataclass(eq=False, slots=True)
class KeyNode:
    name: str
    path: str
    children: dict[str, KeyNode] = field(default_factory=dict)
    tensor: TensorMeta | None = None
    count: int = 0
    params: int = 0
    nbytes: int = 0
    sig: int = 0


def build_tree(tensors: dict[str, TensorMeta]) -> KeyNode:
    root = KeyNode("", "")
    # "a.b" -> the node for a.b: keys sharing a parent skip the walk from the root.
    # Only keys of at most MAX_DEPTH dots go in (deeper ones keep a dotted tail).
    parents: dict[str, KeyNode] = {}
    for key, t in tensors.items():
        head, dot, leaf = key.rpartition(".")
        parent = parents.get(head) if dot else root
        if parent is None:
            if key.count(".") > MAX_DEPTH:
                parent = root
                parts = key.split(".", MAX_DEPTH)
                for part in parts[:-1]:
                    parent = _child(parent, part)
                leaf = parts[-1]
            else:
                parent = root
                for part in head.split("."):
                    parent = _child(parent, part)
                parents[head] = parent
        node = parent.children.get(leaf)
        if node is None:
            ppath = parent.path
            path = (key if ppath == head else f"{ppath}.{leaf}") if ppath else leaf
            node = parent.children[leaf] = KeyNode(leaf, path)
        node.tensor = t
    _aggregate(root)
    return root


def _child(node: KeyNode, part: str) -> KeyNode:
    child = node.children.get(part)
    if child is None:
        child = KeyNode(part, f"{node.path}.{part}" if node.path else part)
        node.children[part] = child
    return child


def _aggregate(root: KeyNode) -> None:
    """Counts, sizes and a structure signature per node, children before parents."""
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    bits: dict[str, int] = {}
    for node in reversed(order):
        t = node.tensor
        if t is not None:
            n = prod(t.shape)
            b = bits.get(t.dtype)
            if b is None:
                b = bits[t.dtype] = itemsize_bits(t.dtype)
            count, params, nbytes = 1, n, (n * b + 7) // 8
            own = (t.shape, t.dtype, t.device)
        else:
            count = params = nbytes = 0
            own = None
        kids = node.children
        if kids:
            for c in kids.values():
                count += c.count
                params += c.params
                nbytes += c.nbytes
            node.sig = hash((own, tuple([(name, c.sig) for name, c in kids.items()])))
        else:
            node.sig = hash((own, ()))
        node.count, node.params, node.nbytes = count, params, nbytes


@dataclass
class Entry:
    """One visible row: a node, or a run of identical numbered siblings."""

    label: str
    node: KeyNode
    repeat: int = 1


def entries(node: KeyNode) -> list[Entry]:
    """The children of ``node`` with runs of identical numbered blocks collapsed."""
    out: list[Entry] = []
    kids = list(node.children.values())
    i = 0
    while i < len(kids):
        first, j = kids[i], i + 1
        if first.name.isdigit() and first.children:
            while (j < len(kids) and kids[j].name.isdigit() and kids[j].sig == first.sig
                   and int(kids[j].name) == int(kids[j - 1].name) + 1):
                j += 1
        if j - i > 1:
            out.append(Entry(f"{{{first.name}..{kids[j - 1].name}}}", first, j - i))
        else:
            out.append(Entry(first.name, first))
        i = j
    return out


def compress(entry: Entry) -> Entry:
    """Fold single-child chains: ``a`` -> ``b`` -> ``c`` shows as ``a.b.c``."""
    label, node = entry.label, entry.node
    while node.tensor is None and len(node.children) == 1:
        (child,) = node.children.values()
        label, node = f"{label}.{child.name}", child
    return Entry(label, node, entry.repeat)


def walk(root: KeyNode, max_depth: int | None = None) -> Iterator[tuple[int, Entry]]:
    """(depth, entry) rows in display order."""
    stack = [(0, compress(e)) for e in reversed(entries(root))]
    while stack:
        depth, e = stack.pop()
        yield depth, e
        if e.node.children and (max_depth is None or depth + 1 < max_depth):
            stack.extend((depth + 1, compress(c)) for c in reversed(entries(e.node)))
