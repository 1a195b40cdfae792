"""accelerate's ``infer_auto_device_map`` and ``get_balanced_memory``, on a checkpoint's
header instead of a model.

Users paste the result into accelerate or transformers, so it must be *their* plan:
the same walk over modules, the same room kept for the largest layer on the first GPU
and the CPU, the same tie handling, the same balancing margin. The module tree comes
from the key names (``layer1.0.conv1.weight`` is tensor ``weight`` of module
``layer1.0.conv1``), in the file's order, which is the model's registration order.

Where a header cannot say what a model could, the rule is written here and in
docs/devices.md: buffers are told from parameters by their names (BatchNorm's running
statistics, ``position_ids``, ``inv_freq``); a model's non-persistent buffers are not in
the file; ``no_split`` is a predicate over module names, not a class list; a bool
tensor is one byte (accelerate counts 1/8).

Devices are accelerate's: ints for GPUs (CUDA indexes), ``"cpu"``, ``"disk"``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence

Device = int | str

BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked",
                          "position_ids", "inv_freq", "attention_bias", "masked_bias",
                          "relative_position_index", "anchors"})
_INTEGERS = ("uint", "int", "bool")  # accelerate never casts these


class Module:
    """A module of the tree: its own tensors (parameters, then buffers) and children."""

    __slots__ = ("params", "buffers", "children")

    def __init__(self) -> None:
        self.params: list[str] = []
        self.buffers: list[str] = []
        self.children: dict[str, Module] = {}


Entry = tuple[str, "Module | None"]  # a module, or a single tensor (None)


class Layout:
    """The module tree, sizes of every prefix (``compute_module_sizes``) and tied groups."""

    def __init__(self, tensors: Iterable[tuple[str, int, str, object]],
                 cast: int | None = None) -> None:
        """``tensors``: (name, numel, dtype, tie) in the file's order; ``tie`` is equal for
        tensors sharing memory (None: shares nothing). ``cast``: bytes per element of the
        dtype the weights are converted to on load (accelerate's ``dtype=``)."""
        from pttui.core.base.dtypes import itemsize_bits

        self.root = Module()
        self.tied: list[list[str]] = []
        firsts: dict[object, list[str]] = {}
        nodes: dict[str, Module] = {"": self.root}
        params: list[tuple[str, int, int, bool]] = []  # name, numel, bytes each, castable
        buffers: list[tuple[str, int, int, bool]] = []
        for name, numel, dtype, tie in tensors:
            own = (itemsize_bits(dtype) + 7) // 8
            if tie is not None:
                group = firsts.setdefault(tie, [])
                group.append(name)
                if len(group) == 2:
                    self.tied.append(group)
                if len(group) > 1:
                    numel = 0  # named_parameters() yields a shared tensor once
            parent, _, leaf = name.rpartition(".")
            node = nodes.get(parent)
            if node is None:
                node = self.root
                for part in parent.split("."):
                    child = node.children.get(part)
                    if child is None:
                        child = node.children[part] = Module()
                    node = child
                nodes[parent] = node
            is_buffer = leaf in BUFFER_NAMES
            (node.buffers if is_buffer else node.params).append(name)
            row = (name, numel, own, not dtype.startswith(_INTEGERS))
            (buffers if is_buffer else params).append(row)
        self._rows = {r[0]: r for r in params + buffers}
        self.cast = cast
        self.sizes = self._sizes(cast)

    def recast(self, cast: int | None) -> Layout:
        """The same tree, sized for weights cast to ``cast`` bytes per element."""
        if cast == self.cast:
            return self
        other = object.__new__(Layout)
        other.root, other.tied, other._rows = self.root, self.tied, self._rows
        other.cast = cast
        other.sizes = other._sizes(cast)
        return other

    def _sizes(self, cast: int | None) -> dict[str, float]:
        """``compute_module_sizes``: every module and tensor, modules in the order they
        first appear in the file (accelerate's), each the sum of what it holds. Walked
        with a stack: a hostile key a thousand dots deep needs no recursion."""
        sized = {name: numel * (min(cast, own) if cast is not None and castable else own)
                 for name, numel, own, castable in self._rows.values()}
        order: list[tuple[str, Module]] = []
        stack: list[tuple[str, Module]] = [("", self.root)]
        while stack:  # pre-order: a module before what it holds
            name, node = stack.pop()
            order.append((name, node))
            prefix = f"{name}." if name else ""
            stack.extend([(prefix + k, c) for k, c in reversed(node.children.items())])
        totals: dict[str, float] = {}
        for name, node in reversed(order):  # children before parents
            total = 0.0
            for t in node.params:
                total += sized[t]
            for t in node.buffers:
                total += sized[t]
            prefix = f"{name}." if name else ""
            for k in node.children:
                total += totals[prefix + k]
            totals[name] = total
        out: dict[str, float] = {}
        for name, node in order:
            out[name] = totals[name]
            for t in node.params:
                out[t] = sized[t]
            for t in node.buffers:
                out[t] = sized[t]
        return out

    def top(self) -> list[Entry]:
        """What accelerate starts from: parameters, children, then buffers of the root."""
        r = self.root
        return ([(p, None) for p in r.params] + list(r.children.items())
                + [(b, None) for b in r.buffers])

    def size(self, name: str) -> float:
        return self.sizes.get(name, 0)

    def is_tensor(self, name: str) -> bool:
        return name in self._rows

    def blocks(self) -> frozenset[str]:
        """The innermost numbered modules (``layers.3``, ``h.11``, ``layer1.0``): the
        default ``no_split``. transformers keeps its decoder layers whole
        (``_no_split_modules``) because a residual block split across devices moves
        activations back and forth; a numbered stage holding numbered blocks (``features.1``
        of an EfficientNet) may still be split between its blocks."""
        out: set[str] = set()

        def walk(name: str, node: Module) -> bool:
            inner = False
            for k, child in node.children.items():
                full = f"{name}.{k}" if name else k
                below = walk(full, child)
                if k.isdigit() and child.children and not below:
                    out.add(full)
                inner = inner or below or (k.isdigit() and bool(child.children))
            return inner

        walk("", self.root)
        return frozenset(out)


def _named(name: str, node: Module, with_params: bool) -> list[Entry]:
    """A module's parts, named in full: its parameters (when split) and its children."""
    prefix = f"{name}."
    own = [(p, None) for p in node.params] if with_params else []
    return own + [(prefix + k, v) for k, v in node.children.items()]


def max_layer(entries: Sequence[Entry], layout: Layout,
              no_split: Callable[[str], bool]) -> tuple[float, list[str]]:
    """``get_max_layer_size``: the largest module that is never split."""
    best, names = 0, []
    todo = list(entries)
    while todo:
        name, node = todo.pop(0)
        if node is None or not node.children or no_split(name):
            size = layout.size(name)
            if size > best:
                best, names = size, [name]
            elif size == best:
                names.append(name)
        else:
            todo = _named(name, node, with_params=False) + todo
    return best, names


def _ties_of(name: str, tied: list[list[str]]) -> list[str]:
    """Tensors tied to one inside ``name`` but lying outside it (accelerate's test,
    substring and all)."""
    groups = [g for g in tied if any(name + "." in k + "." for k in g)
              and not all(name + "." in k + "." for k in g)]
    return [p for g in groups for p in g if name + "." not in p + "."]


def _with_ties(ties: list[str], size: float, layout: Layout,
               todo: list[Entry]) -> tuple[float, list[str], list[Module | None]]:
    """``get_module_size_with_ties``: the module plus the modules holding its ties
    (``todo`` is the stack of entries left: the next one last)."""
    names, nodes = [], []
    for tp in ties:
        hit = next(((n, m) for n, m in reversed(todo) if tp == n or tp.startswith(n + ".")),
                   None)
        if hit is not None:
            names.append(hit[0])
            nodes.append(hit[1])
    total = size
    for tp, mod in zip(ties, names):
        total += layout.size(mod) - layout.size(tp)
    return total, names, nodes


class _Largest:
    """accelerate's ``max_layer_size, max_layer_names`` as its loop keeps them, without
    its rescans: a heap of the modules still to place, by their largest unsplit layer,
    and the set of layer names realising the current value. accelerate rescans every
    module left (and filters a list of names) at each step, quadratic in the number of
    tensors: a flat 100,000-key file would take minutes."""

    def __init__(self, layout: Layout, no_split: Callable[[str], bool],
                 todo: list[Entry]) -> None:
        self.layout, self.no_split = layout, no_split
        self.alive: dict[str, int] = {}
        self.heap: list[tuple[float, int, str, Module]] = []
        self._seq = 0
        self._best: dict[int, float] = {}  # id(module) -> its largest unsplit layer
        for name, node in todo:
            self.add(name, node)
        value, names = max_layer(todo, layout, no_split)  # tensors count, the first time
        self.value, self.names = value, set(names)

    def _unsplit(self, name: str, node: Module) -> bool:
        return not node.children or self.no_split(name)

    def best(self, name: str, node: Module) -> float:
        """The largest layer under ``name`` (itself when it is not split), memoised;
        walked with a stack (a key a thousand dots deep needs no recursion)."""
        got = self._best.get(id(node))
        if got is not None:
            return got
        post: list[tuple[str, Module]] = []
        stack = [(name, node)]
        while stack:
            n, m = stack.pop()
            if id(m) in self._best:
                continue
            post.append((n, m))
            if not self._unsplit(n, m):
                stack.extend((f"{n}.{k}", c) for k, c in m.children.items())
        for n, m in reversed(post):
            self._best[id(m)] = (self.layout.size(n) if self._unsplit(n, m) else
                                 max((self._best[id(c)] for c in m.children.values()),
                                     default=0))
        return self._best[id(node)]

    def layers(self, name: str, node: Module) -> Iterable[tuple[str, Module]]:
        stack = [(name, node)]
        while stack:
            n, m = stack.pop()
            if self._unsplit(n, m):
                yield n, m
            else:
                stack.extend((f"{n}.{k}", c) for k, c in m.children.items())

    def add(self, name: str, node: Module | None) -> None:
        if node is not None:
            self.alive[name] = self.alive.get(name, 0) + 1
            self._seq += 1
            heapq.heappush(self.heap, (-self.best(name, node), self._seq, name, node))

    def removed(self, name: str, node: Module | None) -> None:
        """``name`` left the list of entries to place (the names are not told: accelerate
        drops tied modules from the list without updating them)."""
        if node is not None:
            self.alive[name] -= 1

    def popped(self, name: str, node: Module | None) -> None:
        self.removed(name, node)
        self.names.discard(name)
        if node is not None and self.names:
            for layer, _ in self.layers(name, node):
                self.names.discard(layer)
        if not self.names:
            self.recompute()

    def recompute(self) -> None:
        """``get_max_layer_size`` over the modules left."""
        heap = self.heap
        while heap and self.alive.get(heap[0][2], 0) <= 0:
            heapq.heappop(heap)
        if not heap:
            self.value, self.names = 0, set()
            return
        value = -heap[0][0]
        tops, names = [], set()
        while heap and -heap[0][0] == value:
            entry = heapq.heappop(heap)
            if self.alive.get(entry[2], 0) > 0:
                tops.append(entry)
                names.update(n for n, m in self.layers(entry[2], entry[3])
                             if self.layout.size(n) == value)
        for entry in tops:
            heapq.heappush(heap, entry)
        self.value, self.names = value, names


def infer_device_map(layout: Layout, max_memory: dict[Device, float],
                     no_split: Callable[[str], bool] = lambda name: False
                     ) -> dict[str, Device]:
    """``infer_auto_device_map(model, max_memory, no_split_module_classes)``, cleaned.

    ``max_memory``: GPUs by index first, then ``"cpu"`` and ``"disk"`` if given (bytes).
    The entries to place are a stack (the next one last), so taking one is O(1).
    """
    devices: list[Device] = list(max_memory)
    if "disk" not in devices:
        devices.append("disk")
    gpus = [d for d in devices if d not in ("cpu", "disk")]
    main = [gpus[0], "cpu"] if gpus else ["cpu"]
    first = layout.top()
    todo = first[::-1]
    largest = _Largest(layout, no_split, first)
    dmap: dict[str, Device] = {}
    used = {d: 0.0 for d in devices}
    current = 0
    while todo:
        name, node = todo.pop()
        largest.popped(name, node)
        size = layout.size(name)
        ties = _ties_of(name, layout.tied) if layout.tied else []
        device = devices[current]
        limit = max_memory[device] if device != "disk" else None
        reserved = 0.0
        if device in main and limit is not None:
            limit -= largest.value
            reserved = largest.value
        with_ties, tie_names, tie_nodes = _with_ties(ties, size, layout, todo)
        if limit is None or used[device] + with_ties <= limit:
            used[device] += with_ties
            dmap[name] = device
            for tn in tie_names:
                i = next((i for i in range(len(todo) - 1, -1, -1) if todo[i][0] == tn), None)
                if i is not None:
                    largest.removed(*todo.pop(i))
                dmap[tn] = device
            continue
        if ties and used[device] + size <= limit:
            split = False
            for tn, tnode in zip(tie_names, tie_nodes):
                if tnode is None or not tnode.children or no_split(tn):
                    continue
                order = todo[::-1]
                i = next(i for i, (n, _) in enumerate(order) if n == tn)
                largest.removed(*order[i])
                kids = _named(tn, tnode, True)
                for e in [(name, node), *kids]:
                    largest.add(*e)
                todo = ([(name, node)] + order[:i] + kids + order[i + 1:])[::-1]
                largest.recompute()
                split = True
                break
            if split:
                continue
        if used[device] + size >= limit:
            if node is not None and node.children and not no_split(name):
                kids = _named(name, node, True)
                for e in kids:
                    largest.add(*e)
                todo.extend(reversed(kids))
                largest.recompute()
                continue
        used[device] += reserved
        current += 1
        todo.append((name, node))
        largest.add(name, node)
    return clean(dmap)


def clean(dmap: dict[str, Device]) -> dict[str, Device]:
    """``clean_device_map``: where two or more entries under a module all go to one
    device, the module replaces them, the outermost such module first. Built on a trie
    of the names (accelerate rescans the whole map per module: quadratic)."""
    root: dict = {}
    own: dict[int, Device] = {}
    for key, device in dmap.items():
        node = root
        for part in key.split(".") if key else []:
            node = node.setdefault(part, {})
        own[id(node)] = device
    summary: dict[int, tuple[int, set]] = {}  # id(node) -> (entries under it, devices)
    post, stack = [], [root]
    while stack:
        node = stack.pop()
        post.append(node)
        stack.extend(node.values())
    for node in reversed(post):
        count, seen = (1, {own[id(node)]}) if id(node) in own else (0, set())
        for child in node.values():
            c, d = summary[id(child)]
            count += c
            seen |= d if len(seen) < 2 else set()
        summary[id(node)] = (count, seen if len(seen) < 2 else {None, "mixed"})
    out: dict[str, Device] = {}
    todo = [("", root)]
    while todo:
        name, node = todo.pop()
        count, seen = summary[id(node)]
        if count > 1 and len(seen) == 1:
            out[name] = next(iter(seen))
            continue
        if id(node) in own:
            out[name] = own[id(node)]
        prefix = f"{name}." if name else ""
        todo.extend((prefix + k, c) for k, c in reversed(node.items()))
    return out


def device_of(key: str, dmap: dict[str, Device]) -> Device | None:
    """Where ``key`` lands under ``dmap``: the entry of its longest prefix."""
    parts = key.split(".")
    for i in range(len(parts), -1, -1):
        d = dmap.get(".".join(parts[:i]))
        if d is not None:
            return d
    return None


def balanced_memory(layout: Layout, max_memory: dict[Device, float], user_set: bool,
                    no_split: Callable[[str], bool] = lambda name: False,
                    low_zero: bool = False,
                    kind: Callable[[str], str] = lambda name: "block") -> dict[Device, float]:
    """``get_balanced_memory``: cap every GPU but the last at an even share plus a margin
    (``device_map="auto"`` in transformers and accelerate). ``user_set``: the user gave
    ``max_memory``; otherwise a lone GPU keeps 10% back, as accelerate does. The margin
    is the size of the first no-split module of each ``kind`` (accelerate: of each
    class; a header has no classes, so by default every block is one kind)."""
    out = dict(max_memory)
    gpus = sorted(d for d, m in out.items() if isinstance(d, int) and m > 0)
    if not gpus:
        return out
    if len(gpus) == 1:
        low_zero = False
        if not user_set:
            first = next(d for d in out if isinstance(d, int))
            out[first] *= 0.9
    total = layout.size("")
    per_gpu = total // (len(gpus) - 1 if low_zero else len(gpus))
    margin = 0.0
    seen: dict[str, float] = {}
    for name, size in layout.sizes.items():
        if name and no_split(name):
            seen.setdefault(kind(name), size)
    if seen:
        margin = max(seen.values())
    modules = _without_leaves(layout.sizes)
    leaves = _leaves(modules)
    mean = int(sum(modules[n] for n in leaves) / max(len(leaves), 1))
    per_gpu += int(1.25 * max(margin, mean))
    for d in gpus[:-1]:
        out[d] = min(out[0] if low_zero and d == 0 else per_gpu, out[d])
    if low_zero:
        out[0] = min(max(0, total - sum(out[d] for d in gpus[1:])), out[0])
    return out


def _leaves(sizes: dict[str, float]) -> list[str]:
    """``get_module_leaves``."""
    kids: dict[str, int] = {}
    for m in sizes:
        if m and "." in m:
            parent = m.rsplit(".", 1)[0]
            kids[parent] = kids.get(parent, 0) + 1
    return [m for m in sizes if m and kids.get(m, 0) == 0]


def _without_leaves(sizes: dict[str, float]) -> dict[str, float]:
    leaves = set(_leaves(sizes))
    return {n: v for n, v in sizes.items() if n not in leaves}

