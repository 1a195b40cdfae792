"""Dotted keys as a tree for humans: groups with totals, repeated blocks collapsed.

``layers.0`` .. ``layers.31`` with the same structure, shapes and dtypes show as
one ``layers.{0..31}`` entry, the way transformers' load report does. All walks
are iterative; a key deeper than ``MAX_DEPTH`` parts keeps its tail as one name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pttui.core.meta import TensorMeta

MAX_DEPTH = 64


@dataclass(eq=False)
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
    for key, t in tensors.items():
        parts = key.split(".", MAX_DEPTH)
        node = root
        for part in parts:
            child = node.children.get(part)
            if child is None:
                child = KeyNode(part, f"{node.path}.{part}" if node.path else part)
                node.children[part] = child
            node = child
        node.tensor = t
    _aggregate(root)
    return root


def _aggregate(root: KeyNode) -> None:
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    for node in reversed(order):
        t = node.tensor
        node.count = 1 if t else 0
        node.params = t.numel if t else 0
        node.nbytes = t.nbytes if t else 0
        for c in node.children.values():
            node.count += c.count
            node.params += c.params
            node.nbytes += c.nbytes
        node.sig = hash(((t.shape, t.dtype, t.device) if t else None,
                         tuple((n, c.sig) for n, c in node.children.items())))


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
