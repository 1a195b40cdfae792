"""A DeepSpeed checkpoint folder: ``latest`` names the step folder, whose
``*model_states.pt`` holds the module's weights (rank 0's, when there are several)."""

from __future__ import annotations

import os

from pttui.core.base.meta import Checkpoint, ReadError
from pttui.core.read import formats, weightsfile
from pttui.core.read.weightsfile import inside


def read(folder: str, unpickle_only: bool = False) -> Checkpoint:
    latest = os.path.join(folder, "latest")
    with open(latest, "rb") as f:
        raw = f.read(257)
    tag = raw.decode("utf-8", "replace").strip()
    if not tag or len(raw) > 256 or not tag.isprintable():
        raise ReadError(f"{latest}: does not hold a checkpoint tag (one short line such as "
                        "global_step1000)")
    step = inside(folder, tag, latest, "step folder", want_dir=True)
    names = sorted(n for n in os.listdir(step) if n.endswith("model_states.pt"))
    if not names:
        raise ReadError(f"{step}: no *model_states.pt file; this DeepSpeed step holds no "
                        "model weights")
    name = "mp_rank_00_model_states.pt" if "mp_rank_00_model_states.pt" in names else names[0]
    model = inside(folder, os.path.join(tag, name), latest, "model file")  # no symlink out
    fmt = formats.detect(model)
    if fmt not in weightsfile.FORMATS:
        raise ReadError(f"{model}: a {fmt} file, not a torch.save file")
    ckpt = weightsfile.read(model, fmt, unpickle_only=unpickle_only)
    ckpt.notes.insert(0, f"DeepSpeed folder: 'latest' names {tag}; this is {tag}/{name}"
                      + (f" (of {len(names)} model-state files)" if len(names) > 1 else ""))
    return ckpt
