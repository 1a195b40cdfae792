"""Targets: what a checkpoint should fit, as the state_dict metadata a model expects.

A target spec names a model (``torchvision:resnet18``, ``pkg.mod:factory``,
``path/to/file.py:Factory``) or another checkpoint (``ref:PATH``). Models are built
on the meta device, so a 70B target costs no memory; torch is imported only when a
model spec is loaded, never at import time.

This module resolves a spec (reference file, torchvision name, module or file
factory) into a :class:`Target`; argument parsing, the torchvision catalog, factory
discovery by parsing and the meta-device build live in their own modules and are
re-exported here.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from contextlib import contextmanager
from typing import Any

from pttui.core.base.meta import ReadError
from pttui.core.target.model_args import ModelArgs
from pttui.core.target.build import (
    Target,
    _build,
    _caller,
    _first_line,
    _plain_metadata,
    _target_from,
)
from pttui.core.target.torchvision_catalog import torchvision_models

SPEC_FORMS = "torchvision:NAME, package.module:factory, path/to/file.py:Factory or ref:CHECKPOINT"
_counter = itertools.count()


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
    from pttui.core.guard.readguard import open_guarded

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


# -- importing the user's code -------------------------------------------------------

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
