"""Renames between the key layouts of libraries that build the same architecture: the
correspondence is known, so it needs no guessing from shapes (where timm's ``norm1`` and
``norm2`` have equal shapes and pairing them by order alone is not safe).

Each layout is an ordered list of anchored renames; it is offered when it raises
coverage, and marked safe when every key it renames then matches the model in shape.
"""

from __future__ import annotations

from pttui.core.recipe.recipe import RegexRename
from pttui.core.repair.suggest.measure import _Ctx

_B, _TV = r"^blocks\.(\d+)\.", r"encoder.layers.encoder_layer_\1."
_TVB = r"^encoder\.layers\.encoder_layer_(\d+)\."

LAYOUTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("timm's VisionTransformer", "torchvision's VisionTransformer", [
        (r"^cls_token$", "class_token"),
        (r"^pos_embed$", "encoder.pos_embedding"),
        (r"^patch_embed\.proj\.", "conv_proj."),
        (_B + r"norm1\.", _TV + "ln_1."),
        (_B + r"norm2\.", _TV + "ln_2."),
        (_B + r"attn\.qkv\.(weight|bias)$", _TV + r"self_attention.in_proj_\2"),
        (_B + r"attn\.proj\.", _TV + "self_attention.out_proj."),
        (_B + r"mlp\.fc1\.", _TV + "mlp.0."),
        (_B + r"mlp\.fc2\.", _TV + "mlp.3."),
        (r"^norm\.", "encoder.ln."),
        (r"^head\.", "heads.head."),
    ]),
    ("torchvision's VisionTransformer", "timm's VisionTransformer", [
        (r"^class_token$", "cls_token"),
        (r"^encoder\.pos_embedding$", "pos_embed"),
        (r"^conv_proj\.", "patch_embed.proj."),
        (_TVB + r"ln_1\.", r"blocks.\1.norm1."),
        (_TVB + r"ln_2\.", r"blocks.\1.norm2."),
        (_TVB + r"self_attention\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
        (_TVB + r"self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
        (_TVB + r"mlp\.0\.", r"blocks.\1.mlp.fc1."),
        (_TVB + r"mlp\.3\.", r"blocks.\1.mlp.fc2."),
        (r"^encoder\.ln\.", "norm."),
        (r"^heads\.head\.", "head."),
    ]),
]


def layout_steps(ctx: _Ctx) -> None:
    unexpected = ctx.base.unexpected
    if not unexpected or not ctx.base.missing:
        return
    import re

    for have, want, rules in LAYOUTS:
        hits = sum(1 for k in unexpected if any(re.search(p, k) for p, _ in rules))
        if hits * 2 < len(unexpected):
            continue  # not this layout
        ops = [RegexRename(p, r) for p, r in rules]

        def fits(affected, after) -> bool:  # noqa: ANN001 - measure's veto hook
            renamed = {new for _old, new in affected if new}
            return not any(m.key in renamed for m in after.shape_mismatch)

        ctx.measure(ops, f"rename {have} keys to {want}'s ({len(rules)} rules)", "high", True,
                    f"the file has {have} key layout and the model {want}'s: the known "
                    "correspondence (blocks.N.norm1 = encoder_layer_N.ln_1, attn.qkv = "
                    "self_attention.in_proj, mlp.fc1 = mlp.0, ...), not a pairing by shape",
                    "rename", check=fits)
