"""Targets: what a checkpoint should fit, as the state_dict metadata a model expects.

A target spec names a model (``torchvision:resnet18``, ``pkg.mod:factory``,
``path/to/file.py:Factory``) or another checkpoint (``ref:PATH``). Models are built
on the meta device, so a 70B target costs no memory; torch is imported only when a
model spec is loaded, never at import time.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pttui.core.meta import ReadError, TensorMeta

SPEC_FORMS = "torchvision:NAME, package.module:factory, path/to/file.py:Factory or ref:CHECKPOINT"
_WORDS = {"true": True, "false": False, "none": None, "null": None}
_counter = itertools.count()


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


class ModelArgs(dict):
    """Parsed ``K=V`` model arguments; ``bare`` names the keys whose value was no Python
    literal and so was kept as the string typed (``arch=resnet``), for error messages."""

    bare: frozenset[str] = frozenset()


def parse_model_args(pairs: list[str]) -> ModelArgs:
    """``["num_classes=10", "arch=resnet"]`` -> ``{"num_classes": 10, "arch": "resnet"}``.

    Values are Python literals (``ast.literal_eval``, never ``eval``); anything else
    stays the raw string, and ``true``/``false``/``none`` are accepted as on a shell.
    A key given twice is an error (which one was meant?).
    """
    out = ModelArgs()
    raw_of: dict[str, str] = {}
    bare: set[str] = set()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ReadError(f"bad model argument {pair!r}: expected KEY=VALUE, "
                            "e.g. num_classes=10")
        if key in out:
            raise ReadError(f"model argument {key} is given twice ({key}={raw_of[key]} and "
                            f"{key}={raw.strip()}); give it once")
        raw_of[key] = raw.strip()
        out[key], literal = _literal(raw.strip())
        if not literal:
            bare.add(key)
    out.bare = frozenset(bare)
    return out


def _literal(raw: str) -> tuple[object, bool]:
    """The value and whether it was a literal (else it is ``raw`` itself, a string)."""
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()], True
    try:
        return ast.literal_eval(raw), True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw, False


def _string_hint(args: Mapping[str, Any]) -> str:
    """After a factory failed: which arguments it got as strings (a bare word like
    ``num_classes=abc`` is no literal, so it arrives as ``'abc'``)."""
    bare = getattr(args, "bare", frozenset())
    words = [k for k, v in args.items() if isinstance(v, str) and k in bare]
    if not words:
        return ""
    said = ", ".join(f"{k}={args[k]}" for k in words)
    got = ", ".join(repr(args[k]) for k in words)
    return (f"; note: {said} is not a Python literal, so it was passed as the string "
            f"{got} and the model rejected it")


def torchvision_models() -> list[str]:
    """Every model name ``torchvision:NAME`` accepts (all families), sorted; [] without it."""
    try:
        from torchvision import models
    except Exception:  # noqa: BLE001 - no torchvision: nothing to complete
        return []
    return sorted(models.list_models())


# -- for completion: what a spec may name and which keywords it takes -----------------

_NOT_SETTABLE = ("weights", "weights_backbone", "progress")  # pttui fixes these itself
_MAX_SOURCE = 2_000_000  # bytes of a factory file parsed for completion
_parsed: dict[tuple[str, float, int], list[tuple[str, str, list[tuple[str, str]]]]] = {}


def torchvision_keywords(name: str) -> list[tuple[str, str]]:
    """``[(keyword, "default 1000"), ...]`` the torchvision builder ``name`` accepts:
    its own keyword parameters, and (for ``**kwargs``) those with a default of the
    model class it returns. Imports torchvision (call it off the UI thread); [] when
    there is none or ``name`` is unknown."""
    try:
        from torchvision import models

        builder = models.get_model_builder(name)
        sig = inspect.signature(builder)
    except Exception:  # noqa: BLE001 - completion only
        return []
    out: dict[str, str] = {}
    takes_kwargs = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            takes_kwargs = True
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _NOT_SETTABLE:
            out[p.name] = _default_text(p.default)
    cls = sig.return_annotation
    if takes_kwargs and inspect.isclass(cls):
        try:
            params = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            params = []
        for p in params:
            if (p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty
                    and p.name not in _NOT_SETTABLE):
                out.setdefault(p.name, _default_text(p.default))
    return list(out.items())


def _default_text(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    text = repr(value) if isinstance(value, (int, float, str, bool, type(None), tuple, list)) \
        else getattr(value, "__name__", type(value).__name__)
    return f"default {text if len(text) <= 30 else text[:29] + '…'}"


def file_factories(path: str) -> list[tuple[str, str]]:
    """``[(name, "def (num_classes=10)"), ...]``: the top-level functions and classes of
    the Python file ``path``, found by parsing it (never importing it: completing a name
    must not run the user's code). [] when it cannot be read or parsed."""
    return [(name, what) for name, what, _ in _parse_factories(path)]


def factory_keywords(path: str, name: str) -> list[tuple[str, str]]:
    """The keyword parameters of the top-level function or class ``name`` in ``path``
    (a class: its ``__init__``), found by parsing the file; [] if unknown."""
    for found, _, keywords in _parse_factories(path):
        if found == name:
            return keywords
    return []


def _parse_factories(path: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    try:
        st = os.stat(path)
        if not os.path.isfile(path) or st.st_size > _MAX_SOURCE:
            return []
        key = (os.path.abspath(path), st.st_mtime, st.st_size)
        if key in _parsed:
            return _parsed[key]
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            keywords = _ast_keywords(node.args, skip_first=False)
            out.append((node.name, f"def ({_preview(keywords)})", keywords))
        elif isinstance(node, ast.ClassDef):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                         and n.name == "__init__"), None)
            keywords = _ast_keywords(init.args, skip_first=True) if init else []
            out.append((node.name, f"class ({_preview(keywords)})", keywords))
    if len(_parsed) > 64:
        _parsed.clear()
    _parsed[key] = out
    return out


def _ast_keywords(args: ast.arguments, skip_first: bool) -> list[tuple[str, str]]:
    positional = list(args.posonlyargs) + list(args.args)
    plain = list(args.args)
    firsts = len(positional) - len(args.defaults)
    defaults: dict[str, ast.expr] = {a.arg: d for a, d in zip(positional[firsts:], args.defaults)}
    defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d})
    if skip_first and positional:
        if positional[0] in plain:
            plain.remove(positional[0])
    out = []
    for a in plain + list(args.kwonlyargs):
        d = defaults.get(a.arg)
        out.append((a.arg, "required" if d is None else
                    f"default {_source(d)}"))
    return out


def _source(node: ast.expr) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001
        return "…"
    return text if len(text) <= 30 else text[:29] + "…"


def _preview(keywords: list[tuple[str, str]]) -> str:
    parts = [k if d == "required" else f"{k}={d.removeprefix('default ')}"
             for k, d in keywords[:3]]
    return ", ".join(parts) + (", …" if len(keywords) > 3 else "")


def load_target(spec: str, args: dict | None = None) -> Target:
    """Build the :class:`Target` a spec names. Every failure is a one-line ReadError."""
    spec = (spec or "").strip()
    bare = getattr(args, "bare", frozenset())
    args = ModelArgs(args or {})
    args.bare = bare
    if not spec:
        raise ReadError(f"empty model spec; use {SPEC_FORMS}")
    head, sep, tail = spec.partition(":")
    if head == "ref" and sep:
        if args:
            raise ReadError(f"{spec}: a reference checkpoint takes no model arguments")
        return _reference(spec, tail)
    if head == "torchvision" and sep:
        return _torchvision(spec, tail, args)
    where, sep, attr = spec.rpartition(":")
    if not sep:
        raise ReadError(_no_colon(spec))
    if not attr or not where:
        raise ReadError(f"{spec}: name the module or file and the factory, "
                        f"as in {SPEC_FORMS}")
    if where.endswith(".py") or "/" in where or os.sep in where:
        return _from_file(spec, where, attr, args)
    return _from_module(spec, where, attr, args)


def _no_colon(spec: str) -> str:
    if spec.endswith(".py"):
        return f"{spec}: name the factory after a colon, e.g. {spec}:build_model"
    if os.path.exists(spec):
        return f"{spec}: to compare with another checkpoint, use ref:{spec}"
    if spec in torchvision_models():
        return f"{spec}: did you mean torchvision:{spec}?"
    return f"{spec}: not a model spec; use {SPEC_FORMS}"


def special_file(path: str) -> str | None:
    """What ``path`` is, in words, when it exists but is neither a regular file nor a
    folder (a device, a FIFO, a socket): reading one would block or never end."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    what = ("a character device" if stat.S_ISCHR(mode) else "a block device"
            if stat.S_ISBLK(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    return f"{what}, not a regular file"


def _label(name: str, args: dict) -> str:
    if not args:
        return name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


# -- the four kinds of spec ----------------------------------------------------------

def _reference(spec: str, path: str) -> Target:
    from pttui.core.readguard import open_guarded

    if not path:
        raise ReadError(f"{spec}: name the checkpoint after ref:, e.g. ref:good.pt")
    odd = special_file(path)
    if odd:
        raise ReadError(f"{spec}: the reference checkpoint {path} is {odd}")
    try:
        ckpt = open_guarded(path)  # a reference file is as untrusted as any
    except ReadError as err:
        why = str(err).removeprefix(f"{path}: ")
        raise ReadError(f"{spec}: cannot read the reference checkpoint {path}: {why}") from None
    tensors = dict(ckpt.tensors)
    if not tensors:
        raise ReadError(f"{path}: holds no tensors to compare against")
    first: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    for key, t in tensors.items():
        if t.storage is None:
            continue
        ident = (t.storage.ident, t.storage_offset, t.shape, t.stride)
        if ident in first:
            tied[key] = first[ident]
        else:
            first[ident] = key
    return Target(spec, {}, tensors, frozenset(tensors), frozenset(), tied,
                  _plain_metadata(ckpt.state_metadata), "reference", f"reference {path}")


def _torchvision(spec: str, name: str, args: dict) -> Target:
    _need_torch(spec)
    try:
        from torchvision import models
    except Exception as e:  # noqa: BLE001
        raise ReadError(f"{spec}: torchvision cannot be imported ({_first_line(e)}); "
                        "install it in this Python") from None
    names = models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else \
            "see torchvision.models.list_models()"
        raise ReadError(f"{spec}: unknown torchvision model {name!r}; {hint}")
    fixed = [k for k in ("weights", "weights_backbone") if k in args]
    if fixed:
        raise ReadError(f"{spec}: `{fixed[0]}` cannot be set: pttui builds every model with "
                        f"{fixed[0]}=None on the meta device (only the names and shapes of "
                        f"the weights matter; nothing is downloaded); drop "
                        f"{fixed[0]}={args[fixed[0]]}")
    builder = models.get_model_builder(name)
    kwargs = dict(args)
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs.setdefault("weights_backbone", None)  # never download a backbone
    label = "torchvision " + _label(name, args)
    obj = _build(label, lambda: models.get_model(name, weights=None, **kwargs), args)
    return _target_from(obj, spec, args, label)


def _from_module(spec: str, modname: str, attr: str, args: dict) -> Target:
    _need_torch(spec)
    with _on_path(os.getcwd()):
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and (modname == e.name or modname.startswith(e.name + ".")):
                raise ReadError(f"{spec}: no module named {e.name!r} (is it installed in "
                                "this Python, or on PYTHONPATH?)") from None
            raise ReadError(f"{spec}: importing {modname} failed: {_first_line(e)}") from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 - user code
            raise ReadError(f"{spec}: importing {modname} raised {_first_line(e)}") from None
        factory = _attribute(spec, mod, modname, attr)
        label = _label(f"{modname}:{attr}", args)
        obj = _build(label, _caller(label, factory, args), args)
    return _target_from(obj, spec, args, label)


def _from_file(spec: str, path: str, attr: str, args: dict) -> Target:
    _need_torch(spec)
    if not os.path.isfile(path):
        raise ReadError(f"{spec}: no such file {path}")
    full = os.path.abspath(path)
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(full))[0])
    digest = hashlib.sha1(full.encode()).hexdigest()[:10]
    modname = f"_pttui_target_{stem}_{digest}_{next(_counter)}"
    with _on_path(os.path.dirname(full)):
        try:
            ispec = importlib.util.spec_from_file_location(modname, full)
            if ispec is None or ispec.loader is None:
                raise ReadError(f"{spec}: {path} cannot be imported as Python")
            mod = importlib.util.module_from_spec(ispec)
            sys.modules[modname] = mod
            ispec.loader.exec_module(mod)
        except ReadError:
            raise
        except (Exception, SystemExit) as e:  # noqa: BLE001 - user code may sys.exit()
            sys.modules.pop(modname, None)
            raise ReadError(f"{spec}: importing {path} raised {_first_line(e)}") from None
        factory = _attribute(spec, mod, path, attr)
        label = _label(f"{path}:{attr}", args)
        obj = _build(label, _caller(label, factory, args), args)
    return _target_from(obj, spec, args, label)


# -- helpers ------------------------------------------------------------------------

def _need_torch(spec: str) -> None:
    try:
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001
        raise ReadError(f"{spec}: building a model needs torch, which cannot be imported "
                        f"({_first_line(e)}); use ref:CHECKPOINT to compare with a file") from None


@contextmanager
def _on_path(folder: str):
    """Put ``folder`` first on sys.path while user code imports, so sibling imports work."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _attribute(spec: str, mod: Any, where: str, attr: str) -> Any:
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise ReadError(f"{spec}: {where} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


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
