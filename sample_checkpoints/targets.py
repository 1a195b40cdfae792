"""Model factories to check the sample checkpoints against.

Point pttui at them as ``sample_checkpoints/targets.py:tiny_vit``.  This file has no
side effects on import (unlike ``models.py``, which leaves a marker file).
"""

import torchvision
from torch import nn


def tiny_vit(num_classes: int = 10) -> nn.Module:
    """A 24k-parameter torchvision VisionTransformer for 32x32 images."""
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=num_classes,
    )
