"""Value steps, found from shape relations between what the file has and what the model
wants: transposes (HF Conv1D vs nn.Linear), fused q/k/v vs separate ones, the same
elements in another shape, a position embedding for another grid, a first conv for
other input channels, a vocabulary of another size.

Each is measured like every other step (it must raise coverage). An exact,
unambiguous relation is ``high``; resampling, channel adaptation and a grown
vocabulary are ``medium`` and safe for ``--auto`` (timm does the first two itself
when it loads pretrained weights); a shrunk vocabulary loses rows and is never safe.
"""

from __future__ import annotations

import re
from pttui.core.base.meta import TensorMeta
from pttui.core.compare.strict import ShapeMismatch
from pttui.core.repair.diagnose.relations import CONV1D, VOCAB, grids, is_reshaped, is_rows, \
    is_transposed
from pttui.core.recipe.joinops import Concat, Split
from pttui.core.recipe.op import Op
from pttui.core.recipe.valueops import (AdaptInputChannels, ResamplePosEmbed, Reshape,
                                        ResizeRows, Transpose)
from pttui.core.base import humanize as hz
from pttui.core.repair.suggest.cleanup import _exact_regex
from pttui.core.repair.suggest.measure import _Ctx

_n = hz.counted

_ROLES = {"q": re.compile(r"(^|[._])(q|query)([._]|proj|$)"),
          "k": re.compile(r"(^|[._])(k|key)([._]|proj|$)"),
          "v": re.compile(r"(^|[._])(v|value)([._]|proj|$)"),
          "gate": re.compile(r"(^|[._])(gate|w1)([._]|proj|$)"),
          "up": re.compile(r"(^|[._])(up|w3)([._]|proj|$)")}
_FUSIONS = (("q", "k", "v"), ("gate", "up"))
_LAYER = re.compile(r"\.\d+\.")


def _family(keys: list[str], tensors: dict[str, TensorMeta]) -> list[str]:
    """Globs with the layer numbers as ``*`` that match exactly ``keys``, else []."""
    import fnmatch

    globs = sorted({_LAYER.sub(".*.", k) for k in keys})
    hit = {k for k in tensors for g in globs if fnmatch.fnmatchcase(k, g)}
    return globs if hit == set(keys) else []


def value_steps(ctx: _Ctx) -> None:
    base, tensors, expected = ctx.base, ctx.tensors, ctx.target.tensors
    bad = base.shape_mismatch
    if bad:
        _transposes(ctx, bad)
        _reshapes(ctx, bad)
        for m in bad:
            _pos_embed(ctx, m)
        _input_conv(ctx, bad)
        _rows(ctx, bad)
    if base.missing and base.unexpected:
        _fusions(ctx, base.missing, base.unexpected, tensors, expected, fuse=True)
        _fusions(ctx, base.unexpected, base.missing, expected, tensors, fuse=False)


def _transposes(ctx: _Ctx, bad: list[ShapeMismatch]) -> None:
    """2-D weights stored as [in, out]; and, when every non-square 2-D weight of the same
    blocks is so stored, the square ones too (shapes cannot tell those apart)."""
    hits = [m.key for m in bad if is_transposed(m)]
    if not hits:
        return
    tensors, expected = ctx.tensors, ctx.target.tensors
    blocks = {_LAYER.sub(".*.", k).rpartition(".")[0].rpartition(".")[0] for k in hits}
    names = {k.rpartition(".")[2] for k in hits}
    near = [k for k, m in tensors.items() if len(m.shape) == 2 and k in expected
            and k.rpartition(".")[2] in names
            and _LAYER.sub(".*.", k).rpartition(".")[0].rpartition(".")[0] in blocks]
    square = [k for k in near if tensors[k].shape[0] == tensors[k].shape[1]
              and tuple(expected[k].shape) == tuple(tensors[k].shape)]
    as_is = [k for k in near if k not in square and tuple(expected[k].shape) ==
             tuple(tensors[k].shape)]
    family = sorted(set(hits) | (set(square) if square and not as_is else set()))
    globs = _family(family, tensors)
    ops: list[Op] = [Transpose(g) for g in globs] or [Transpose(_exact_regex(family), "regex")]
    stored = ("HF Conv1D layout: [in, out] where nn.Linear keeps [out, in]"
              if any(CONV1D.search(k) for k in hits)
              else "[in, out] where the model keeps [out, in]")
    why = f"{_n(len(hits), 'weight')} {'is' if len(hits) == 1 else 'are'} stored transposed ({stored})"
    if len(family) > len(hits):
        why += (f"; every non-square weight of these blocks is, so the "
                f"{_n(len(family) - len(hits), 'square weight')} of the same blocks "
                "(which their shapes cannot tell) are transposed too")
    ctx.measure(ops, f"transpose {_n(len(family), 'weight')} ({', '.join(globs[:3]) or hits[0]}"
                f"{', ...' if len(globs) > 3 else ''})", "high", True, why, "value")


def _reshapes(ctx: _Ctx, bad: list[ShapeMismatch]) -> None:
    keys = [m for m in bad if is_reshaped(m)]
    by_shape: dict[tuple, list[str]] = {}
    for m in keys:
        by_shape.setdefault(tuple(m.model_shape), []).append(m.key)
    for shape, group in by_shape.items():
        ctx.measure([Reshape(_exact_regex(group), shape, "regex")],
                    f"reshape {_n(len(group), 'key')} to {list(shape)}", "high", True,
                    "the same elements in another rank (a Linear stored as a 1x1 conv, or "
                    "the reverse): only size-1 dims differ", "value")


def _pos_embed(ctx: _Ctx, m: ShapeMismatch) -> None:
    g = grids(m)
    if g is None:
        return
    prefix, old_side, side = g
    method = "torchvision" if m.key.endswith("encoder.pos_embedding") else "timm"
    op = ResamplePosEmbed(m.key, (side, side), prefix, (old_side, old_side), method)
    ctx.measure([op], f"resample {m.key} from a {old_side}x{old_side} to a {side}x{side} grid",
                "medium", True, f"the model is built for another image size or patch grid; "
                f"{_n(prefix, 'prefix token')} kept exactly, the grid interpolated "
                f"bicubically as {method} does (timm does this itself when it loads "
                "pretrained weights)", "value")


def _input_conv(ctx: _Ctx, bad: list[ShapeMismatch]) -> None:
    first = next((k for k, t in ctx.target.tensors.items() if len(t.shape) == 4), None)
    m = next((m for m in bad if m.key == first), None)
    if m is None:
        return
    fs, ms = tuple(m.checkpoint_shape), tuple(m.model_shape)
    if fs[0] != ms[0] or fs[2:] != ms[2:] or fs[1] == ms[1]:
        return
    if not (fs[1] == 3 or (ms[1] == 1 and fs[1] % 3 == 0)):
        return
    how = "summed over RGB" if ms[1] == 1 else f"RGB repeated and scaled by 3/{ms[1]}"
    ctx.measure([AdaptInputChannels(m.key, ms[1])],
                f"adapt the first conv {m.key} from {fs[1]} to {ms[1]} input channel(s)",
                "medium", True, f"the model takes {ms[1]} input channel(s); the RGB weights "
                f"are {how}, as timm's adapt_input_conv does when it loads pretrained "
                "weights", "value")


def _rows(ctx: _Ctx, bad: list[ShapeMismatch]) -> None:
    """Vocabulary tables and their tied head: only the row count differs."""
    groups: dict[tuple[int, int], list[str]] = {}
    for m in bad:
        if is_rows(m):
            groups.setdefault((m.checkpoint_shape[0], m.model_shape[0]), []).append(m.key)
    for (have, want), keys in groups.items():
        if not any(VOCAB.search(k) for k in keys):
            continue  # a classifier with other classes is a head to train, not a vocabulary
        grow = want > have
        why = (f"the model's vocabulary has {want - have:,} more row(s) (added tokens): "
               "the kept rows are exact, the new ones start at the mean of the old "
               "(transformers' resize_token_embeddings with mean_resizing)" if grow else
               f"the model's vocabulary has {have - want:,} fewer row(s): the last rows are "
               "dropped and lost; check that the tokenizer agrees")
        ctx.measure([ResizeRows(_exact_regex(keys), want, "regex")],
                    f"resize the vocabulary of {', '.join(keys[:2])}"
                    f"{', ...' if len(keys) > 2 else ''} from {have:,} to {want:,} rows",
                    "medium" if grow else "low", grow, why, "value")


def _fusions(ctx: _Ctx, wanted: list[str], spare: list[str], have: dict, want: dict,
             fuse: bool) -> None:
    """A key the other side lacks (``wanted``) that is the concat of q/k/v (gate/up) keys
    the other side has in excess (``spare``), in the same module. ``fuse``: the model
    wants the fused one (concat); else the file has it (split)."""
    spare_by_module: dict[str, list[str]] = {}
    for k in spare:
        spare_by_module.setdefault(k.rpartition(".")[0].rpartition(".")[0], []).append(k)
    found: list[tuple[list[str], str]] = []
    for key in wanted:
        module, _, leaf = key.rpartition(".")
        parent = module.rpartition(".")[0]
        fused_leaf = leaf.rpartition("_")[2] if leaf.startswith("in_proj_") else leaf
        if leaf.startswith("in_proj_"):
            parent = module
        for roles in _FUSIONS:
            parts = []
            for role in roles:
                hits = [k for k in spare_by_module.get(parent, []) + spare_by_module.get(
                    module, []) if k.rpartition(".")[2] == fused_leaf
                    and _ROLES[role].search(k[len(parent):].rpartition(".")[0])]
                if len(set(hits)) != 1:
                    break
                parts.append(hits[0])
            else:
                shapes = [tuple(have[p].shape) for p in parts]
                whole = tuple(want[key].shape) if key in want else ()
                if (whole and all(len(s) == len(whole) and s[1:] == whole[1:] for s in shapes)
                        and sum(s[0] for s in shapes) == whole[0]
                        and len({have[p].dtype for p in parts}) == 1):
                    found.append((parts, key))
                break
    if not found:
        return
    ops: list[Op] = [Concat(tuple(parts), key) if fuse else
                     Split(key, tuple(parts), 0, tuple(have[p].shape[0] for p in parts))
                     for parts, key in found]
    what = "fused" if fuse else "separate"
    ctx.measure(ops, f"{'concat' if fuse else 'split'} {_n(len(found), 'group')} of "
                f"{'/'.join(_roles_of(found[0][0]))} into {what} tensors "
                f"({found[0][1] if fuse else ', '.join(found[0][0])}{', ...' if len(found) > 1 else ''})",
                "high", True, f"the model keeps {'one fused' if fuse else 'separate'} "
                "tensor(s) where the file has " + ("separate ones" if fuse else "one fused")
                + "; the order (q, k, v / gate, up) is read from the names and the sizes "
                "add up exactly", "value")


def _roles_of(parts: list[str]) -> list[str]:
    return [next((r for r, rx in _ROLES.items() if rx.search(p.rpartition(".")[0])), "?")
            for p in parts]
