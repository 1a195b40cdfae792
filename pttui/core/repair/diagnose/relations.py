"""How a file's tensor relates to the model's when only the shape differs: stored
transposed, the same elements in another rank, a position embedding for another grid,
a vocabulary of another size. The diagnosis names the relation; the value steps
(``suggest/values.py``) repair it."""

from __future__ import annotations

import re
from math import prod

from pttui.core.compare.strict import ShapeMismatch
from pttui.core.recipe.valueops import square_grid

POS = re.compile(r"(^|\.)(pos_embed|pos_embedding|position_embeddings?|"
                 r"positional_embedding|absolute_pos_embed)(\.weight)?$")
VOCAB = re.compile(r"(^|\.)(wte|word_embeddings|embed_tokens|tok_embeddings|tok_emb|"
                   r"token_embedding|shared|embed_in|embed_out|lm_head|output|"
                   r"final_logits_bias)(\.weight|\.bias)?$")
CONV1D = re.compile(r"\.c_(attn|proj|fc)\.weight$")


def is_transposed(m: ShapeMismatch) -> bool:
    return len(m.checkpoint_shape) == 2 and tuple(m.checkpoint_shape[::-1]) == tuple(
        m.model_shape)


def is_reshaped(m: ShapeMismatch) -> bool:
    fs, ms = tuple(m.checkpoint_shape), tuple(m.model_shape)
    return (prod(fs) == prod(ms) and len(fs) != len(ms)
            and [s for s in fs if s != 1] == [s for s in ms if s != 1])


def grids(m: ShapeMismatch) -> tuple[int, int, int] | None:
    """(prefix tokens, old side, new side) of a position embedding for another grid."""
    fs, ms = tuple(m.checkpoint_shape), tuple(m.model_shape)
    if not POS.search(m.key) or len(fs) != len(ms) or len(fs) not in (2, 3) \
            or fs[:-2] != ms[:-2] or fs[-1] != ms[-1]:
        return None
    old, new = square_grid(fs[-2]), square_grid(ms[-2])
    if old is None or new is None or old[0] != new[0] or old == new:
        return None
    return new[0], old[1], new[1]


def is_rows(m: ShapeMismatch) -> bool:
    fs, ms = tuple(m.checkpoint_shape), tuple(m.model_shape)
    return bool(fs) and len(fs) == len(ms) <= 2 and fs[1:] == ms[1:] and fs[0] != ms[0]


def relation(m: ShapeMismatch) -> str | None:
    """One clause for ``m``, or None when no known relation explains it."""
    if is_transposed(m):
        return ("is stored transposed" + (" (HF Conv1D layout)" if CONV1D.search(m.key)
                                          else "") + ": transpose it")
    if is_reshaped(m):
        return (f"holds the same elements in another shape ({list(m.checkpoint_shape)} vs "
                f"{list(m.model_shape)}): reshape it")
    g = grids(m)
    if g is not None:
        return (f"is a position embedding for a {g[1]}x{g[1]} grid, the model's for "
                f"{g[2]}x{g[2]}: resample it")
    if is_rows(m) and VOCAB.search(m.key):
        return (f"is a vocabulary of {m.checkpoint_shape[0]:,} rows, the model's has "
                f"{m.model_shape[0]:,}: resize it")
    return None
