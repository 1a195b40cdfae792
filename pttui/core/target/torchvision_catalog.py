"""The torchvision catalog: which ``torchvision:NAME`` models exist and which keyword
arguments each builder takes, for completion and for "did you mean" hints.

torchvision (and so torch) is imported only inside the functions, never at import.
"""

from __future__ import annotations

import inspect
from typing import Any

_NOT_SETTABLE = ("weights", "weights_backbone", "progress")  # pttui fixes these itself


def torchvision_models() -> list[str]:
    """Every model name ``torchvision:NAME`` accepts (all families), sorted; [] without it."""
    try:
        from torchvision import models
    except Exception:  # noqa: BLE001 - no torchvision: nothing to complete
        return []
    return sorted(models.list_models())


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
