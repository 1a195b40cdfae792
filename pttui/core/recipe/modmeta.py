"""A state_dict's ``_metadata`` (module versions) renamed along with its keys.

torch uses these versions when loading (BatchNorm before version 2 has no
``num_batches_tracked``), so a renamed state_dict must carry renamed metadata.
"""

from __future__ import annotations

from typing import Any

from pttui.core.base.meta import TensorMeta
from pttui.core.recipe.recipe import Recipe


def carry_metadata(state_metadata: Any, recipe: Recipe) -> Any:
    """The source state_dict's ``_metadata`` with its module prefixes renamed the way the
    recipe renames keys, so BatchNorm and other versioned modules load as saved."""
    if not isinstance(state_metadata, dict):
        return state_metadata  # None (no metadata) stays None
    marker = "\x00meta"
    # the name ops only: a value op would refuse the stand-in scalars, and a module whose
    # tensors it fuses or parts keeps no versions worth carrying (Linear's are all 1)
    recipe = Recipe([op for op in recipe.ops if not op.changes_values])
    kept: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for prefix, value in state_metadata.items():
        key = f"{prefix}.{marker}" if prefix else marker
        renamed = recipe.apply({key: TensorMeta(key, (), "float32", "cpu")})
        for new_key in renamed:
            new_prefix = new_key[:-len(marker)].rstrip(".")
            (kept if new_key == key else moved)[new_prefix] = value
    # a renamed entry wins over one left in place: after stripping `module.`, the
    # model's own root entry replaces the DataParallel wrapper's
    return {**kept, **moved}


def metadata_for(source: Any, recipe: Recipe) -> Any:
    """The ``_metadata`` the recipe's output carries (renamed like the keys): what a load
    of it would see. UNKNOWN when the recipe picks a container other than the one the
    reader read the metadata for."""
    from pttui.core.compare.strict import UNKNOWN

    if recipe.container is not None and tuple(recipe.container) != source.selected:
        return UNKNOWN
    return carry_metadata(source.state_metadata, recipe)
