"""One command language for ``pttui shell`` and the TUI's ``:`` line.

    ctx = Context()                       # or Context(existing_session)
    result = run_line(ctx, "open a.pt")   # never prints, never raises (but Ctrl-C)
    result.status, result.title, result.body, result.data

Exports are lazy (PEP 562), so ``import pttui.commands`` costs nothing until used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CommandResult": "result", "CommandCancelled": "result", "OK": "result",
    "ERROR": "result", "CANCELLED": "result",
    "Context": "context", "status": "context",
    "ParseError": "parser", "Spec": "parser", "Arg": "parser", "Opt": "parser",
    "run_line": "registry", "parse": "registry", "lookup": "registry", "specs": "registry",
    "names": "registry", "Call": "registry",
    "Candidate": "complete", "candidates": "complete", "complete_line": "complete",
    "ModelCatalog": "complete", "model_catalog": "complete",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"pttui.commands.{module}"), name)
