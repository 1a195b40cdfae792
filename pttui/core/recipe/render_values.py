"""The value ops in the renderings: plain PyTorch lines (with the few helpers they call,
written into the snippet so it runs without pttui), and what mmengine's
``revise_keys`` and transformers' ``key_mapping`` cannot say about them."""

from __future__ import annotations

from pttui.core.recipe.joinops import Concat, Split, Stack, Unstack
from pttui.core.recipe.op import Op
from pttui.core.recipe.valueops import (AdaptInputChannels, ResamplePosEmbed, Reshape,
                                        ResizeRows, Transpose, ValueOp)

# transformers v5's conversion operations, where one does the same
_HF_OPS = {Transpose: "Transpose", Concat: "Concatenate", Split: "Chunk",
           Stack: "MergeModulelist", Unstack: "SplitModulelist"}

HELPERS = {
    "template": '''def template(text):
    """pttui's key templates: `*` any text (the same in every key), `#` an index."""
    parts = re.split(r"([*#])", text)
    return re.compile("".join("(.*?)" if p == "*" else r"(\\d+)" if p == "#" else re.escape(p)
                              for p in parts))


def fill(text, stars, index=None):
    stars = iter(stars)
    return "".join(next(stars) if p == "*" else str(index) if p == "#" else p
                   for p in re.split(r"([*#])", text))


def replace(sd, groups):
    """sd with each group's keys replaced by its outputs, where its first key stood."""
    used = {k for keys, _ in groups.values() for k in keys}
    out = {}
    for k, v in sd.items():
        if k in groups:
            out.update(groups[k][1])
        elif k not in used:
            out[k] = v
    return out
''',
    "concat": '''def concat(sd, sources, target, dim):
    rx, groups = template(sources[0]), {}
    for k in list(sd):
        m = rx.fullmatch(k)
        if m:
            keys = [fill(s, m.groups()) for s in sources]
            groups[k] = (keys, {fill(target, m.groups()): torch.cat([sd[x] for x in keys], dim)})
    return replace(sd, groups)
''',
    "split": '''def split(sd, source, targets, dim, sizes):
    rx, groups = template(source), {}
    for k, v in sd.items():
        m = rx.fullmatch(k)
        if m:
            cut = sizes or [v.shape[dim] // len(targets)] * len(targets)
            parts = v.split(list(cut), dim)
            groups[k] = ([k], {fill(t, m.groups()): p.contiguous()
                               for t, p in zip(targets, parts)})
    return replace(sd, groups)
''',
    "stack": '''def stack(sd, source, target, dim):
    rx, found = template(source), {}
    for k in sd:
        m = rx.fullmatch(k)
        if m:
            *stars, index = m.groups()
            found.setdefault(tuple(stars), {})[int(index)] = k
    groups = {}
    for stars, by_index in found.items():
        keys = [by_index[i] for i in range(len(by_index))]
        first = next(k for k in sd if k in keys)
        groups[first] = (keys, {fill(target, stars): torch.stack([sd[k] for k in keys], dim)})
    return replace(sd, groups)
''',
    "unstack": '''def unstack(sd, source, target, dim):
    rx, groups = template(source), {}
    for k, v in sd.items():
        m = rx.fullmatch(k)
        if m:
            groups[k] = ([k], {fill(target, m.groups(), i): t.contiguous()
                               for i, t in enumerate(v.unbind(dim))})
    return replace(sd, groups)
''',
    "resize_rows": '''def resize_rows(v, rows, fill_with):
    """Kept rows exact; new ones the mean of the old (transformers' mean_resizing) or 0."""
    if rows <= v.shape[0]:
        return v[:rows].clone()
    new = v.float().mean(0).to(v.dtype) if fill_with == "mean" else torch.zeros_like(v[0])
    return torch.cat([v, new.expand(rows - v.shape[0], *v.shape[1:])])
''',
    "adapt_input_conv": '''def adapt_input_conv(w, channels):
    """timm's adapt_input_conv: 1 channel sums RGB; N repeat RGB and scale by 3/N."""
    dtype, w = w.dtype, w.float()
    if channels == 1:
        if w.shape[1] > 3:
            return w.reshape(w.shape[0], w.shape[1] // 3, 3, *w.shape[2:]).sum(2).to(dtype)
        return w.sum(1, keepdim=True).to(dtype)
    w = w.repeat(1, -(-channels // 3), *([1] * (w.dim() - 2)))[:, :channels]
    return (w * (3 / channels)).to(dtype)
''',
    "resample_pos_embed": '''def resample_pos_embed(v, prefix, old, new, method):
    """Prefix tokens kept; the grid bicubic (timm: antialias; torchvision: align_corners)."""
    flat = v.dim() == 2
    x = v.unsqueeze(0) if flat else v
    dim, tokens = x.shape[-1], x.shape[-2]
    if old is None:  # the fewest prefix tokens (0-8) that leave a square grid
        prefix = next(p for p in ([prefix] if prefix is not None else range(9))
                      if math.isqrt(tokens - p) ** 2 == tokens - p)
        side = math.isqrt(tokens - prefix)
        old = (side, side)
    grid = x[:, prefix:].float().reshape(1, *old, dim).permute(0, 3, 1, 2)
    how = {"antialias": True} if method == "timm" else {"align_corners": True}
    grid = torch.nn.functional.interpolate(grid, size=tuple(new), mode="bicubic", **how)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(x.dtype)
    out = torch.cat([x[:, :prefix], grid], 1)
    return out[0] if flat else out
''',
}


def python_lines(op: Op, match: str) -> tuple[list[str], list[str]]:
    """(lines transforming ``sd``, helpers they call) for a value op; ``match`` is the
    snippet's test of key ``k`` for a pattern op."""
    each = "for k, v in sd.items()"
    if isinstance(op, Transpose):
        a, b = op.dims
        return [f"sd = {{k: v.transpose({a}, {b}).contiguous() if {match} else v {each}}}"], []
    if isinstance(op, Reshape):
        return [f"sd = {{k: v.reshape({tuple(op.shape)!r}) if {match} else v {each}}}"], []
    if isinstance(op, ResizeRows):
        return [f"sd = {{k: resize_rows(v, {op.rows}, {op.fill!r}) if {match} else v "
                f"{each}}}"], ["resize_rows"]
    if isinstance(op, AdaptInputChannels):
        return [f"sd = {{k: adapt_input_conv(v, {op.channels}) if {match} else v {each}}}"], \
            ["adapt_input_conv"]
    if isinstance(op, ResamplePosEmbed):
        old = tuple(op.old_grid) if op.old_grid is not None else None
        return [f"sd[{op.key!r}] = resample_pos_embed(sd[{op.key!r}], {op.prefix!r}, {old!r}, "
                f"{tuple(op.grid)!r}, {op.method!r})"], ["resample_pos_embed"]
    if isinstance(op, Concat):
        return [f"sd = concat(sd, {list(op.sources)!r}, {op.target!r}, {op.dim})"], \
            ["template", "concat"]
    if isinstance(op, Split):
        sizes = list(op.sizes) if op.sizes else None
        return [f"sd = split(sd, {op.source!r}, {list(op.targets)!r}, {op.dim}, {sizes!r})"], \
            ["template", "split"]
    if isinstance(op, Stack):
        return [f"sd = stack(sd, {op.source!r}, {op.target!r}, {op.dim})"], ["template", "stack"]
    if isinstance(op, Unstack):
        return [f"sd = unstack(sd, {op.source!r}, {op.target!r}, {op.dim})"], \
            ["template", "unstack"]
    return [], []


def caveat(op: Op, tool: str) -> str | None:
    """Why ``tool``'s rename list cannot do a value op, and what to use instead."""
    if not isinstance(op, ValueOp):
        return None
    what = op.describe()
    if tool == "transformers":
        hf = _HF_OPS.get(type(op))
        where = (f"transformers v5 does this with its `{hf}` conversion operation (a "
                 "WeightConverter), not key_mapping" if hf else
                 "transformers has no conversion operation for it")
        return f"{what}: changes values; {where}. Export with `pttui fix` instead"
    return (f"{what}: changes values, which {tool} renames cannot; export with `pttui fix` "
            "(or use the Python snippet)")
