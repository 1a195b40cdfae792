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
    """``get_module_size_with_ties``: the module plus the modules holding its ties."""
    names, nodes = [], []
    for tp in ties:
        hit = next(((n, m) for n, m in todo if tp == n or tp.startswith(n + ".")), None)
        if hit is not None:
            names.append(hit[0])
            nodes.append(hit[1])
    total = size
    for tp, mod in zip(ties, names):
        total += layout.size(mod) - layout.size(tp)
    return total, names, nodes


def infer_device_map(layout: Layout, max_memory: dict[Device, float],
                     no_split: Callable[[str], bool] = lambda name: False
                     ) -> dict[str, Device]:
    """``infer_auto_device_map(model, max_memory, no_split_module_classes)``, cleaned.

    ``max_memory``: GPUs by index first, then ``"cpu"`` and ``"disk"`` if given (bytes).
    """
    devices: list[Device] = list(max_memory)
    if "disk" not in devices:
        devices.append("disk")
    gpus = [d for d in devices if d not in ("cpu", "disk")]
    main = [gpus[0], "cpu"] if gpus else ["cpu"]
    todo = layout.top()
    dmap: dict[str, Device] = {}
    used = {d: 0.0 for d in devices}
    current = 0
    biggest, biggest_names = max_layer(todo, layout, no_split)
    while todo:
        name, node = todo.pop(0)
        biggest_names = [n for n in biggest_names if n != name and not n.startswith(name + ".")]
        if not biggest_names:
            biggest, biggest_names = max_layer([e for e in todo if e[1] is not None],
                                               layout, no_split)
        size = layout.size(name)
        ties = _ties_of(name, layout.tied)
        device = devices[current]
        limit = max_memory[device] if device != "disk" else None
        reserved = 0.0
        if device in main and limit is not None:
            limit -= biggest
            reserved = biggest
        with_ties, tie_names, tie_nodes = _with_ties(ties, size, layout, todo)
        if limit is None or used[device] + with_ties <= limit:
            used[device] += with_ties
            dmap[name] = device
            for tn in tie_names:
                todo = [e for e in todo if e[0] != tn]
                dmap[tn] = device
            continue
        if ties and used[device] + size <= limit:
            split = False
            for tn, tnode in zip(tie_names, tie_nodes):
                if tnode is None or not tnode.children or no_split(tn):
                    continue
                i = next(i for i, (n, _) in enumerate(todo) if n == tn)
                todo = [(name, node)] + todo[:i] + _named(tn, tnode, True) + todo[i + 1:]
                biggest, biggest_names = max_layer([e for e in todo if e[1] is not None],
                                                   layout, no_split)
                split = True
                break
            if split:
                continue
        if used[device] + size >= limit:
            if node is not None and node.children and not no_split(name):
                todo = _named(name, node, True) + todo
                biggest, biggest_names = max_layer([e for e in todo if e[1] is not None],
                                                   layout, no_split)
                continue
        used[device] += reserved
        current += 1
        todo = [(name, node)] + todo
    return clean(dmap)


def clean(dmap: dict[str, Device], module: str = "") -> dict[str, Device]:
    """``clean_device_map``: parts of a module all on one device become the module."""
    prefix = "" if module == "" else f"{module}."
    values = [v for k, v in dmap.items() if k.startswith(prefix)]
    if len(set(values)) == 1 and len(values) > 1:
        for k in [k for k in dmap if k.startswith(prefix)]:
            del dmap[k]
        dmap[module] = values[0]
    depth = len(module.split(".")) + 1 if module else 1
    kids = {".".join(k.split(".")[:depth]) for k in dmap
            if k.startswith(prefix) and len(k) > len(module)}
    for kid in kids:
        clean(dmap, kid)
    return dmap


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

