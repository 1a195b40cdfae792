"""TinyNet: the class behind ``tinynet_whole_model.pt``.

``tinynet_whole_model.pt`` is a whole pickled ``nn.Module`` (``torch.save(model)``),
so loading it with ``weights_only=False`` imports this file as the top-level module
``models`` -- the classic "No module named 'models'" situation.

Importing this module leaves a marker file named ``pttui_models_imported`` in
``$PTTUI_SAMPLE_MARKER_DIR`` (or the system temp dir when that is unset).  Tests use
it to prove that merely inspecting a checkpoint never imports user code.
"""

import os
import tempfile

import torch
from torch import nn

MARKER_NAME = "pttui_models_imported"


def _leave_marker() -> None:
    marker_dir = os.environ.get("PTTUI_SAMPLE_MARKER_DIR") or tempfile.gettempdir()
    with open(os.path.join(marker_dir, MARKER_NAME), "w") as f:
        f.write(f"{__file__} was imported\n")


_leave_marker()


class TinyNet(nn.Module):
    """conv-bn-relu x2, global average pool, LayerNorm, linear head (~5.6k params)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.norm(x))
