"""Build a model on the meta device and describe the state_dict it expects.

The :class:`Target` (keys, shapes, dtypes, tied and non-persistent entries) comes
from calling the user's factory under ``torch.device("meta")``, so a 70B target costs
no memory. torch is imported only inside the functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pttui.core.base.meta import ReadError, TensorMeta
from pttui.core.target.model_args import _string_hint

@dataclass
class Target:
    """The expected state_dict (parameters + persistent buffers) and what it takes to load."""

    spec: str
    args: dict[str, Any]
    tensors: dict[str, TensorMeta]
    param_keys: frozenset[str] = frozenset()
    non_persistent: frozenset[str] = frozenset()
    tied: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] | None = None
    kind: str = "model"  # model | reference
    label: str = ""
    # BatchNorm ``num_batches_tracked`` keys: torch fills them itself when the
    # checkpoint's ``_metadata`` gives that module no version >= 2 (or has none).
    auto_fill: frozenset[str] = frozenset()


def _caller(label: str, factory: Any, args: dict):
    """A thunk building the object: a module instance or state_dict is used as it is."""
    import torch

    if isinstance(factory, (torch.nn.Module, Mapping)) or not callable(factory):
        if args:
            raise ReadError(f"{label}: an already built object takes no model arguments")
        return lambda: factory  # _target_from says what it is when it is no model
    return lambda: factory(**args)


def _build(label: str, thunk, args: Mapping[str, Any] | None = None) -> Any:
    """Run ``thunk`` on the meta device; if it needs real data there, build layer by
    layer on CPU moving each parameter to meta as it is registered (small peak)."""
    import torch

    try:
        with torch.device("meta"):
            return thunk()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code (argparse exits)
        if "meta" not in str(e).lower():
            raise ReadError(f"{label} raised {_first_line(e)}{_string_hint(args or {})}"
                            ) from None
        meta_error = e
    try:
        with _params_to_meta():
            return thunk()
    except Exception:  # noqa: BLE001
        raise ReadError(f"{label} cannot be built on the meta device "
                        f"({_first_line(meta_error)}); pttui builds models there so a "
                        "large target costs no memory") from None


@contextmanager
def _params_to_meta():
    import torch
    from torch.nn.modules import module as torch_module

    def move(_module, _name, value):
        if value is None or value.is_meta:
            return None
        moved = value.detach().to("meta")
        if isinstance(value, torch.nn.Parameter):
            return torch.nn.Parameter(moved, requires_grad=value.requires_grad)
        return moved

    handles = [torch_module.register_module_parameter_registration_hook(move),
               torch_module.register_module_buffer_registration_hook(move)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _target_from(obj: Any, spec: str, args: dict, label: str) -> Target:
    import torch

    args = dict(args)
    if isinstance(obj, torch.nn.Module):
        return _from_nn_module(obj, spec, args, label)
    if isinstance(obj, Mapping):
        return _from_state_dict(obj, spec, args, label)
    what = "a class that builds none" if inspect.isclass(obj) else type(obj).__name__
    raise ReadError(f"{label} is {what}, not an nn.Module, a factory of one, or a state_dict")


def _from_nn_module(model: Any, spec: str, args: dict, label: str) -> Target:
    from torch.nn.modules.batchnorm import _NormBase

    sd = model.state_dict(keep_vars=True)
    tensors, params, tied = _describe(sd, label)
    non_persistent: set[str] = set()
    auto_fill: set[str] = set()
    for name, mod in model.named_modules(remove_duplicate=False):
        prefix = f"{name}." if name else ""
        for buf in mod._non_persistent_buffers_set:
            if mod._buffers.get(buf) is not None:
                non_persistent.add(prefix + buf)
        if isinstance(mod, _NormBase) and mod.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key in tensors:
                auto_fill.add(key)
    return Target(spec, args, tensors, frozenset(params), frozenset(non_persistent), tied,
                  _plain_metadata(getattr(sd, "_metadata", None)), "model", label,
                  frozenset(auto_fill))


def _from_state_dict(sd: Mapping, spec: str, args: dict, label: str) -> Target:
    tensors, params, tied = _describe(sd, label)
    if not params:  # a plain dict of tensors: every entry is a weight
        params = set(tensors)
    return Target(spec, args, tensors, frozenset(params), frozenset(), tied,
                  _plain_metadata(getattr(sd, "_metadata", None)), "model", label)


def _describe(sd: Mapping, label: str) -> tuple[dict[str, TensorMeta], set[str], dict[str, str]]:
    import torch
    from torch.nn.parameter import is_lazy

    tensors: dict[str, TensorMeta] = {}
    params: set[str] = set()
    tied: dict[str, str] = {}
    first: dict[int, str] = {}
    for key, v in sd.items():
        key = str(key)
        extra = key == "_extra_state" or key.endswith("._extra_state")
        if not isinstance(v, torch.Tensor):
            if not extra:
                raise ReadError(f"{label}: its state_dict entry {key!r} is "
                                f"{type(v).__name__}, not a tensor")
            tensors[key] = TensorMeta(key, (), "object", "meta", kind="extra_state")
            continue
        dtype = str(v.dtype).removeprefix("torch.")
        if is_lazy(v):
            tensors[key] = TensorMeta(key, (), dtype, "meta", kind="lazy")
        else:
            kind = "extra_state" if extra else \
                "parameter" if isinstance(v, torch.nn.Parameter) else "tensor"
            tensors[key] = TensorMeta(key, tuple(v.shape), dtype, "meta", None, 0,
                                      tuple(v.stride()), kind)
        if isinstance(v, torch.nn.Parameter):
            params.add(key)
        if id(v) in first:
            tied[key] = first[id(v)]
        else:
            first[id(v)] = key
    return tensors, params, tied


def _plain_metadata(md: Any) -> dict[str, dict[str, Any]] | None:
    if not isinstance(md, Mapping):
        return None
    return {str(k): dict(v) if isinstance(v, Mapping) else {} for k, v in md.items()}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."
