"""Export a session's state the way ``pttui fix`` does: recipe applied to real
tensors, ``_metadata`` carried over, the recipe written beside the output."""

from __future__ import annotations

import os
from typing import Any

from pttui.core.base.meta import Checkpoint, ReadError
from pttui.core.recipe.recipe import Recipe

FORMATS = {"pt": ".pt", "safetensors": ".safetensors"}


def default_output(source_path: str, fmt: str = "pt") -> str:
    """``NAME.fixed.pt`` beside the source; a folder checkpoint (DCP, a sharded set's
    index) is named after its folder and written beside that folder."""
    path = os.path.abspath(source_path)
    if path.endswith(".index.json") or os.path.isdir(path):
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        return os.path.join(os.path.dirname(folder),
                            os.path.basename(folder) + ".fixed" + FORMATS[fmt])
    stem, _ext = os.path.splitext(path)
    return stem + ".fixed" + FORMATS[fmt]


def free_output(source_path: str, fmt: str = "pt") -> str:
    """:func:`default_output`, or ``NAME.fixed-2.pt`` (-3, ...) when an earlier export
    took that name (or its recipe's): exporting again never starts with a refusal."""
    first = default_output(source_path, fmt)
    stem, ext = os.path.splitext(first)
    for n in range(1, 100):
        out = first if n == 1 else f"{stem}-{n}{ext}"
        if not os.path.lexists(out) and not os.path.lexists(recipe_path(out)):
            return out
    return first


def with_format(out: str, fmt: str) -> str:
    """``out`` with its extension switched to ``fmt``'s."""
    stem, ext = os.path.splitext(out)
    return (stem if ext in (".pt", ".pth", ".bin", ".safetensors") else out) + FORMATS[fmt]


def recipe_path(out: str) -> str:
    return out + ".recipe.json"


def export_session(source: Checkpoint, recipe: Recipe, out: str, *, fmt: str | None = None,
                   force: bool = False, write_recipe: bool = True,
                   recipe_out: str | None = None, progress: Any = None, cancel: Any = None):
    """Write ``out`` and, unless told not to, the recipe (``out.recipe.json`` by default);
    the one export path of `pttui fix`, the shell and the TUI.
    Returns (ExportResult, recipe path or None)."""
    from pttui.core.repair.autofix import reopen
    from pttui.core.export.export import export
    from pttui.core.recipe.modmeta import carry_metadata

    rpath = (recipe_out or recipe_path(out)) if write_recipe else None
    if rpath and os.path.exists(rpath) and not force:
        from pttui.core.export.export import OutputExists

        raise OutputExists(rpath)
    ckpt = reopen(source, recipe)
    result = export(ckpt, recipe.apply(ckpt.tensors), ckpt.tensors, out, fmt=fmt,
                    force=force, metadata=carry_metadata(ckpt.state_metadata, recipe),
                    progress=progress, cancel=cancel)
    if rpath:
        recipe.save(rpath)
    return result, rpath
