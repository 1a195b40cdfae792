"""A folder's face: the public names its package offers, each imported from its module
on first use (PEP 562), so that ``import pttui.core.read`` stays as cheap as before and
``from pttui.core.read import open_checkpoint`` imports only the reader.

The fronts import core through the faces; inside core, modules import each other by
their full names (the layering contracts read those)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def face(package: str, table: dict[str, tuple[str, ...]]
         ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` from ``{module: names}``."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # not cached on the package: the module stays the one home of the name, so that
        # what replaces it there (a test's monkeypatch, a reload) is what every front sees
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
