"""Find the state_dicts inside an unpickled object tree.

A checkpoint is a tree of dicts, lists and objects; the tensors that form a
state_dict may sit at the root, under ``state_dict``/``model``/``ema``, inside a
pickled ``nn.Module`` (``_parameters``/``_buffers``/``_modules``) or a TorchScript
object. Every walk here is iterative, visits each shared node once and stops at a
node budget, so a hostile pickle cannot make it recurse or explode.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator

from pttui.core.base.meta import Container, ReadError, TensorMeta
from pttui.core.read.pickle.unpickler import Opaque

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

NODE_BUDGET = 5_000_000
_new = tuple.__new__  # a NamedTuple without its Python-level __new__ (once per key)
MAX_NAME = 4096  # characters in a tensor's dotted name: deep nesting or a cycle, not a model
KEY_CHARS = 256 << 20  # characters of tensor names a walk may build (long names x many keys)
_EMA = re.compile(r"(^|_)ema($|_)", re.I)
_OPT_KEY = re.compile(r"^\d+\.(step|exp_avg|exp_avg_sq|max_exp_avg_sq|momentum_buffer|sum|"
                      r"square_avg|acc_delta|mu|eta|ax|prev|exp_inf|state_step)$")
_PREFERRED = ("state_dict", "model", "model_state", "model_state_dict", "module", "net",
              "network", "weights", "params", "params_ema")


class _Budget:
    def __init__(self, label: str, limit: int = NODE_BUDGET) -> None:
        self.left, self.label = limit, label
        self.chars = KEY_CHARS

    def spend(self, n: int = 1, chars: int = 0) -> None:
        self.left -= n
        self.chars -= chars
        if self.left < 0:
            raise ReadError(f"{self.label}: the object tree is larger than {NODE_BUDGET:,} "
                            "nodes (a reference bomb or a damaged file); refusing to walk it")
        if self.chars < 0:
            raise ReadError(f"{self.label}: the tensor names add up to more than "
                            f"{KEY_CHARS:,} characters (long names repeated under many keys: "
                            "a hostile or damaged file); refusing to list them")

    def bomb(self, tensors: int) -> ReadError:
        return ReadError(f"{self.label}: the object tree reaches over {NODE_BUDGET:,} tensors "
                         f"through shared references ({tensors:,}+ paths: a reference bomb "
                         "or a damaged file); refusing to walk it")


def _module_state(node: Any) -> dict | None:
    """The attribute dict of a pickled nn.Module, else None."""
    if isinstance(node, Opaque) and isinstance(node.state, dict):
        st = node.state
        if isinstance(st.get("_parameters"), dict) and isinstance(st.get("_modules"), dict):
            return st
    return None


def _is_scripted(node: Any) -> bool:
    return (isinstance(node, Opaque) and isinstance(node.state, dict)
            and type(node).qualname.startswith("__torch__."))


def children(node: Any) -> Iterator[tuple[str, Any]]:
    """Named children of a generic node (dict, list, object state)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (k if type(k) is str else _key(k)), v
    elif type(node) in (list, tuple):
        for i, v in enumerate(node):
            yield str(i), v
    elif isinstance(node, Opaque):
        if isinstance(node.state, dict):
            yield from children(node.state)
        if isinstance(node.items, (dict, list)):
            yield from children(node.items)


_STR = frozenset({str})
_TENSOR = frozenset({TensorMeta})


def _all_tensors(values: Any) -> bool:
    """Every value a TensorMeta (a plain state_dict), tested at C speed: the walks
    below meet one such mapping of 100,000 entries, and test it several times."""
    return _TENSOR.issuperset(map(type, values))


def named_children(node: Any) -> list[tuple[str, Any]]:
    """``list(children(node))``; for a dict with str keys (any state_dict) built at C
    speed, not one generator step per key."""
    if isinstance(node, dict) and _STR.issuperset(map(type, node)):
        return list(node.items())
    return list(children(node))


def _values(node: Any) -> Any:
    """Children without names: the cheap walk for "holds tensors?"."""
    if isinstance(node, dict):
        return node.values()
    if type(node) in (list, tuple):
        return node
    out: list = []
    if isinstance(node.state, dict):
        out.extend(node.state.values())
    if isinstance(node.items, dict):
        out.extend(node.items.values())
    elif isinstance(node.items, list):
        out.extend(node.items)
    return out


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, int) and k.bit_length() > 64:
        return f"<int of {k.bit_length()} bits>"  # str() of a 5,000-digit int raises
    if isinstance(k, (int, float, bool)) or k is None:
        return str(k)
    return f"<{type(k).__name__}>"


def _is_container(node: Any) -> bool:
    t = type(node)
    return t is dict or t in (list, tuple) or isinstance(node, dict) or (
        isinstance(node, Opaque) and (node.state is not None or node.items is not None))


def _tensor_ok(t: TensorMeta) -> bool:
    return type(t.shape) is tuple and type(t.dtype) is str and isinstance(t.device, str)


class Walker:
    """Answers "does this subtree hold tensors?" once per node, then flattens.

    ``holds_tensors`` also counts, per node, the tensors a flatten could emit with
    shared nodes counted once per path to them: an exponential reference bomb
    shows up there as a huge count before anything is expanded.
    """

    def __init__(self, label: str) -> None:
        self.budget = _Budget(label)
        self._weight: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps ids stable while we look at them

    def holds_tensors(self, root: Any) -> bool:
        return self.weight(root) > 0

    def weight(self, root: Any) -> int:
        """Tensors reachable under root, counted per path (capped past NODE_BUDGET)."""
        if type(root) is TensorMeta:
            return 1
        if not _is_container(root):
            return 0
        weights = self._weight
        if id(root) in weights:
            return weights[id(root)]
        order: list[Any] = []
        stack, seen = [root], {id(root)}
        while stack:
            node = stack.pop()
            order.append(node)
            vals = _values(node)
            self.budget.spend(len(vals))
            if _all_tensors(vals):
                continue
            for child in vals:
                if type(child) in (str, int, float, bool, TensorMeta) or child is None:
                    continue
                if id(child) not in seen and id(child) not in weights and _is_container(child):
                    seen.add(id(child))
                    stack.append(child)
        self._keep.extend(order)
        cap, get = NODE_BUDGET + 1, weights.get
        for node in reversed(order):  # children before parents (a cycle counts once)
            vals = _values(node)
            if _all_tensors(vals):
                weights[id(node)] = min(len(vals), cap)
                continue
            w = 0
            for c in vals:
                w += 1 if type(c) is TensorMeta else get(id(c), 0)
            weights[id(node)] = w if w < cap else cap
        return weights[id(root)]

    def check_bomb(self, root: Any) -> None:
        w = self.weight(root)
        if w > NODE_BUDGET:
            raise self.budget.bomb(w)

    def flatten(self, root: Any) -> dict[str, TensorMeta]:
        """Dotted keys of every tensor under root, in state_dict order.

        Plain containers reached twice are walked once; a module reached twice is
        listed under each name, as ``state_dict()`` does, but never inside itself.
        A plain state_dict is its own answer: keyed in place, not copied (a second
        table of 100,000 entries is 5 MB). Containers are flattened top-down, so no
        later walk of an enclosing one re-keys it.
        """
        if (isinstance(root, dict) and _module_state(root) is None
                and _STR.issuperset(map(type, root)) and _all_tensors(root.values())
                and all(map(_tensor_ok, root.values()))):
            self.budget.spend(len(root))
            _emit_keyed(root, "", root)
            return root
        out: dict[str, TensorMeta] = {}
        stack: list[tuple[str, Any, int]] = [("", root, 0)]
        seen: set[int] = set()
        above: list[int] = []  # ids of the containers on the path to the node popped
        holds = self.holds_tensors
        while stack:
            key, node, depth = stack.pop()
            if type(node) is TensorMeta:
                if _tensor_ok(node):
                    out[key] = _new(TensorMeta, (key, *node[1:]))
                continue
            del above[depth:]
            mod = _module_state(node)
            if mod is not None:
                if id(node) in above:
                    raise ReadError(f"{self.budget.label}: module {_short(key)} contains "
                                    "itself; torch's state_dict() would never finish")
                items = list(_module_items(mod))
            else:
                if id(node) in seen:
                    continue  # the same plain container reached twice: walk it once
                seen.add(id(node))
                items = (None if isinstance(node, dict) and _all_tensors(node.values())
                         else named_children(node))
            above.append(id(node))
            prefix = key + "." if key else ""
            if len(prefix) > MAX_NAME:
                raise ReadError(f"{self.budget.label}: tensor names nest past {MAX_NAME:,} "
                                f"characters ({_short(key)}); a hostile or damaged file")
            if items is None:  # a plain state_dict
                self.budget.spend(len(node), len(prefix) * len(node))
                _emit_keyed(node, prefix, out)
                continue
            self.budget.spend(len(items), len(prefix) * len(items))
            if all(type(child) is TensorMeta for _, child in items):
                # A plain state_dict: its tensors would be pushed, then popped one after
                # another with nothing in between; emit them in order, without the stack.
                for name, t in items:
                    if type(t.shape) is tuple and type(t.dtype) is str and isinstance(
                            t.device, str):  # _tensor_ok, inlined
                        name = prefix + name
                        out[name] = _new(TensorMeta, (name, *t[1:]))
                continue
            for name, child in reversed(items):
                if type(child) is TensorMeta or holds(child):
                    stack.append((prefix + name, child, depth + 1))
        return out


def _emit_keyed(sd: dict, prefix: str, out: dict[str, TensorMeta]) -> None:
    """A plain state_dict's tensors, keyed, in order, into ``out``. Each keyed copy also
    replaces the unkeyed one in the tree (pttui's own stand-ins, read-only to everyone
    else), so the unkeyed one is freed at once and its memory reused: at 100,000 keys the
    walk used to add 11 MiB to the peak, now nothing."""
    for k, t in sd.items():
        if type(t.shape) is tuple and type(t.dtype) is str and isinstance(t.device, str):
            name = prefix + (k if type(k) is str else _key(k))  # _tensor_ok, inlined
            out[name] = sd[k] = _new(TensorMeta, (name, *t[1:]))


def _short(key: str, limit: int = 60) -> str:
    text = key if key.isprintable() else repr(key)[1:-1]
    return text if len(text) <= limit else text[:limit // 2] + "…" + text[-limit // 2:]


def _module_items(st: dict) -> Iterator[tuple[str, Any]]:
    """What ``module.state_dict()`` would list, in its order."""
    non_persistent = st.get("_non_persistent_buffers_set")
    skip = set(non_persistent) if isinstance(non_persistent, (set, frozenset)) else set()
    for name, t in st["_parameters"].items():
        if isinstance(t, TensorMeta):
            yield _key(name), t
    buffers = st.get("_buffers")
    if isinstance(buffers, dict):
        for name, t in buffers.items():
            if isinstance(t, TensorMeta) and name not in skip:
                yield _key(name), t
    for name, sub in st["_modules"].items():
        if _module_state(sub) is not None:
            yield _key(name), sub


BARE_TENSOR_KEY = "tensor"  # the key pttui gives a file that holds one bare tensor
# Entry names that say "this is one part of a checkpoint" (weights, EMA, optimizer, ...).
# A name that starts with a role word (model_ema, state_dict, net_g, teacher), or says
# EMA or optimizer anywhere; "text_model" or "resnet" are parts of one model, not roles.
_ROLE = re.compile(r"^(state_dict|model|module|net|network|weights|params|optim|ema|sched|"
                   r"scaler|teacher|student|generator|discriminator)|(^|[._])ema([._]|$)|"
                   r"optim", re.I)


def _splits(kids: list[tuple[str, Any]]) -> tuple[bool, bool]:
    """(split, keep_whole) for a mapping all of whose entries hold tensors.

    ``{'model': sd, 'optimizer': osd}`` and ``{'state_dict': sd, 'state_dict_ema': sd}``
    are several containers, not one: an entry named for a role, a module, or a flat
    state_dict (dotted keys) under an entry splits the mapping. Split only by flat
    state_dicts under plain names (``{'encoder': sd1, 'decoder': sd2}``), the whole
    mapping stays a candidate too, since a model may want both parts. Optimizer state
    (``{0: {'exp_avg': t}}``) and nested parameter trees stay one container.
    """
    by_role = any(_ROLE.search(k) or _module_state(c) is not None for k, c in kids)
    flat = sum(1 for _, c in kids if isinstance(c, dict) and c and _all_tensors(c.values())
               and any("." in k for k in c if type(k) is str))
    # one entry alone is the same weights under a prefix: list it once, as the entry
    return by_role or flat > 0, not by_role and len(kids) > 1


def find_containers(root: Any, walker: Walker) -> list[Container]:
    """Every candidate state_dict, top-down: a node with tensors of its own, a module,
    or a mapping all of whose entries hold tensors (unless ``_splits`` says it is
    several containers side by side), is one candidate."""
    walker.check_bomb(root)
    if type(root) is TensorMeta:  # torch.save(tensor): one bare tensor
        return [Container((), {BARE_TENSOR_KEY: _new(TensorMeta, (BARE_TENSOR_KEY, *root[1:]))},
                          "tensor")] if _tensor_ok(root) else []
    found: list[Container] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in seen or not walker.holds_tensors(node):
            continue
        seen.add(id(node))
        if isinstance(node, dict) and _all_tensors(node.values()):
            direct, holding, others = True, [], 0  # a plain state_dict: nothing to split
        else:
            kids = named_children(node)
            direct = any(type(c) is TensorMeta for _, c in kids)
            holding = [(k, c) for k, c in kids if c is not None and (
                type(c) is TensorMeta or walker.holds_tensors(c))]
            others = sum(c is not None for _, c in kids) - len(holding)
        module = _module_state(node) is not None or _is_scripted(node)
        whole = module or direct or (holding and not others)
        if whole and not module and not direct:
            split, keep_whole = _splits(holding)
            if split:
                whole = False
                if keep_whole and (tensors := walker.flatten(node)):
                    found.append(Container(path, tensors, _kind_of(path, tensors)))
        if whole:
            tensors = walker.flatten(node)
            if tensors:
                kind = ("module" if _module_state(node) is not None
                        else "torchscript" if _is_scripted(node) else _kind_of(path, tensors))
                found.append(Container(path, tensors, kind))
            continue
        for k, c in reversed(holding):
            stack.append((path + (k,), c))
    return found


def _kind_of(path: tuple[str, ...], tensors: dict[str, TensorMeta]) -> str:
    keys = list(tensors)[:50]
    if any("optim" in p.lower() for p in path) or (
            keys and sum(bool(_OPT_KEY.match(k)) for k in keys) > len(keys) // 2):
        return "optimizer"
    return "state_dict"


def best(containers: list[Container]) -> Container | None:
    """The candidate a user most likely means: model weights over optimizer state,
    raw over EMA, more parameters, then a conventional name."""
    def score(c: Container) -> tuple:
        name = c.path[-1] if c.path else ""
        return (c.kind != "optimizer", not any(_EMA.search(p) for p in c.path), c.params,
                name in _PREFERRED, -len(c.path))
    return max(containers, key=score, default=None)


# -- "other": the non-tensor entries a user cares about (epoch, step, args) ----------

_NP_CODES = {"f8": "<d", "f4": "<f", "f2": "<e", "i8": "<q", "i4": "<i", "i2": "<h",
             "i1": "<b", "u8": "<Q", "u4": "<I", "u2": "<H", "u1": "<B", "b1": "<?"}


SUMMARY_NODES = 2000  # values shown in "other" per checkpoint: a memo bomb prints "…"


def summarize(value: Any, depth: int = 4, width: int = 40, budget: list[int] | None = None
              ) -> Any:
    """A small JSON-able picture of a non-tensor value (at most SUMMARY_NODES values)."""
    budget = [SUMMARY_NODES] if budget is None else budget
    budget[0] -= 1
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "…"
    if isinstance(value, int):
        return value if value.bit_length() <= 256 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN is not JSON
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if type(value) is TensorMeta:
        return f"<tensor {value.dtype}{list(value.shape)}>"
    scalar = _numpy_scalar(value)
    if scalar is not None:
        return summarize(scalar, depth, width, budget)
    if depth <= 0 or budget[0] <= 0:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {_key(k): summarize(v, depth - 1, width, budget) for k, v in items[:width]}
        if len(items) > width:
            out["…"] = f"{len(items) - width} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_l = [summarize(v, depth - 1, width, budget) for v in seq[:width]]
        if len(seq) > width:
            out_l.append(f"… {len(seq) - width} more")
        return out_l
    if isinstance(value, Opaque):
        if getattr(type(value), "called", False) and value.args:
            return {"__call__": type(value).qualname,
                    "args": summarize(list(value.args), depth - 1, width, budget)}
        out_o: dict[str, Any] = {"__class__": type(value).qualname}
        if isinstance(value.state, dict):
            inner = summarize(value.state, depth - 1, width, budget)
            if isinstance(inner, dict):
                out_o.update(inner)
        return out_o
    return f"<{type(value).__name__}>"


def _numpy_scalar(value: Any) -> Any:
    """numpy.float64(0.91) pickles as scalar(dtype('f8'), bytes): decode it without numpy."""
    if not isinstance(value, Opaque) or not type(value).qualname.endswith("multiarray.scalar"):
        return None
    if len(value.args) != 2 or not isinstance(value.args[1], bytes):
        return None
    dt = value.args[0]
    code = dt.args[0] if isinstance(dt, Opaque) and dt.args and isinstance(dt.args[0], str) else ""
    fmt = _NP_CODES.get(code)
    if fmt is None or struct.calcsize(fmt) != len(value.args[1]):
        return None
    return struct.unpack(fmt, value.args[1])[0]


def other_entries(root: Any, walker: Walker) -> dict[str, Any]:
    """Top-level entries that hold no tensors (epoch, global_step, hyper_parameters, args)."""
    if _module_state(root) is not None or _is_scripted(root) or not _is_container(root):
        return {}
    if isinstance(root, dict) and _all_tensors(root.values()):
        return {}  # a bare state_dict: nothing else at the top
    budget = [SUMMARY_NODES]
    out: dict[str, Any] = {}
    for k, v in children(root):
        if type(v) is TensorMeta or walker.holds_tensors(v):
            continue
        if budget[0] <= 0:
            out["…"] = "more entries not shown"
            break
        out[k] = summarize(v, budget=budget)
    return out
