"""Find the state_dicts inside an unpickled object tree.

A checkpoint is a tree of dicts, lists and objects; the tensors that form a
state_dict may sit at the root, under ``state_dict``/``model``/``ema``, inside a
pickled ``nn.Module`` (``_parameters``/``_buffers``/``_modules``) or a TorchScript
object. Every walk here is iterative, visits each shared node once and stops at a
node budget, so a hostile pickle cannot make it recurse or explode.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Any

from pttui.core.meta import Container, ReadError, TensorMeta
from pttui.core.unpickler import Opaque

NODE_BUDGET = 5_000_000
_EMA = re.compile(r"(^|_)ema($|_)", re.I)
_OPT_KEY = re.compile(r"^\d+\.(step|exp_avg|exp_avg_sq|max_exp_avg_sq|momentum_buffer|sum|"
                      r"square_avg|acc_delta|mu|eta|ax|prev|exp_inf|state_step)$")
_PREFERRED = ("state_dict", "model", "model_state", "model_state_dict", "module", "net",
              "network", "weights", "params", "params_ema")


class _Budget:
    def __init__(self, label: str, limit: int = NODE_BUDGET) -> None:
        self.left, self.label = limit, label

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise ReadError(f"{self.label}: the object tree is larger than {NODE_BUDGET:,} "
                            "nodes (a reference bomb or a damaged file); refusing to walk it")


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
    """Answers "does this subtree hold tensors?" once per node, then flattens."""

    def __init__(self, label: str) -> None:
        self.budget = _Budget(label)
        self._holds: dict[int, bool] = {}
        self._keep: list[Any] = []  # keeps ids stable while we look at them

    def holds_tensors(self, root: Any) -> bool:
        if type(root) is TensorMeta:
            return True
        if not _is_container(root):
            return False
        holds = self._holds
        if id(root) in holds:
            return holds[id(root)]
        order: list[Any] = []
        stack, seen = [root], {id(root)}
        while stack:
            node = stack.pop()
            order.append(node)
            vals = _values(node)
            self.budget.spend(len(vals))
            for child in vals:
                if type(child) in (str, int, float, bool, TensorMeta) or child is None:
                    continue
                if id(child) not in seen and id(child) not in holds and _is_container(child):
                    seen.add(id(child))
                    stack.append(child)
        self._keep.extend(order)
        for node in reversed(order):
            found = False
            for c in _values(node):
                if type(c) is TensorMeta or holds.get(id(c), False):
                    found = True
                    break
            holds[id(node)] = found
        return holds[id(root)]

    def flatten(self, root: Any) -> dict[str, TensorMeta]:
        """Dotted keys of every tensor under root, in state_dict order."""
        out: dict[str, TensorMeta] = {}
        stack: list[tuple[str, Any]] = [("", root)]
        seen: set[int] = set()
        holds = self.holds_tensors
        while stack:
            key, node = stack.pop()
            if type(node) is TensorMeta:
                if _tensor_ok(node):
                    out[key] = TensorMeta(key, *node[1:])
                continue
            mod = _module_state(node)
            if mod is not None:
                items = list(_module_items(mod))
            else:
                if id(node) in seen:
                    continue  # the same plain container reached twice: walk it once
                seen.add(id(node))
                items = list(children(node))
            self.budget.spend(len(items))
            prefix = key + "." if key else ""
            for name, child in reversed(items):
                if type(child) is TensorMeta or holds(child):
                    stack.append((prefix + name, child))
        return out


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


def find_containers(root: Any, walker: Walker) -> list[Container]:
    """Every candidate state_dict, top-down: a node with tensors of its own, a module,
    or a mapping all of whose entries hold tensors, is one candidate."""
    found: list[Container] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in seen or not walker.holds_tensors(node):
            continue
        seen.add(id(node))
        kids = list(children(node))
        direct = any(type(c) is TensorMeta for _, c in kids)
        holding = [(k, c) for k, c in kids if c is not None and (
            type(c) is TensorMeta or walker.holds_tensors(c))]
        others = sum(c is not None for _, c in kids) - len(holding)
        module = _module_state(node) is not None or _is_scripted(node)
        if module or direct or (holding and not others):
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


def summarize(value: Any, depth: int = 4, width: int = 40) -> Any:
    """A small JSON-able picture of a non-tensor value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "…"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if type(value) is TensorMeta:
        return f"<tensor {value.dtype}{list(value.shape)}>"
    scalar = _numpy_scalar(value)
    if scalar is not None:
        return scalar
    if depth <= 0:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {_key(k): summarize(v, depth - 1, width) for k, v in items[:width]}
        if len(items) > width:
            out["…"] = f"{len(items) - width} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_l = [summarize(v, depth - 1, width) for v in seq[:width]]
        if len(seq) > width:
            out_l.append(f"… {len(seq) - width} more")
        return out_l
    if isinstance(value, Opaque):
        if getattr(type(value), "called", False) and value.args:
            return {"__call__": type(value).qualname,
                    "args": summarize(list(value.args), depth - 1, width)}
        out_o: dict[str, Any] = {"__class__": type(value).qualname}
        if isinstance(value.state, dict):
            out_o.update(summarize(value.state, depth - 1, width))
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
    return {k: summarize(v) for k, v in children(root)
            if type(v) is not TensorMeta and not walker.holds_tensors(v)}
