"""Model factories to check the sample checkpoints against.

Point pttui at them as ``sample_checkpoints/targets.py:tiny_vit``.  This file has no
side effects on import (unlike ``models.py``, which leaves a marker file).
"""

import torchvision
from torch import nn


def tiny_vit(num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """A 24k-parameter torchvision VisionTransformer for 32x32 images (or another size:
    the position embedding then has another grid)."""
    return torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=num_classes,
    )


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


def tiny_gpt(vocab: int = 64, d: int = 32, layers: int = 2, positions: int = 16) -> nn.Module:
    """A GPT in nanoGPT's layout: GPT-2's names, plain nn.Linear weights ([out, in]), the
    head tied to the token embedding."""
    model = nn.Module()
    model.transformer = nn.ModuleDict(dict(
        wte=nn.Embedding(vocab, d), wpe=nn.Embedding(positions, d),
        h=nn.ModuleList([_Block(d) for _ in range(layers)]), ln_f=nn.LayerNorm(d)))
    model.lm_head = nn.Linear(d, vocab, bias=False)
    model.transformer.wte.weight = model.lm_head.weight
    return model


def gray_squeezenet() -> nn.Module:
    """torchvision's squeezenet1_1 for 1-channel (grayscale) input."""
    model = torchvision.models.squeezenet1_1(weights=None)
    model.features[0] = nn.Conv2d(1, 64, kernel_size=3, stride=2)
    return model
