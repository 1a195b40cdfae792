"""In the load child: write the loaded tensors to a ``.safetensors`` file.

After an unsafe load (``weights_only=False``) this is how the weights leave the
child: as raw tensor bytes under a JSON header that pttui's own reader validates,
never as a pickle, so nothing the file's code built can ride along. Tensors
stream one at a time (memory of the largest tensor, not of the model); tensors
that share memory are written once and the other names listed as aliases in
``pttui.aliases``, the convention pttui's export uses; tensors safetensors cannot
hold (sparse, quantized, meta, nested) are skipped and named.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from pttui.core.base.dtypes import SAFETENSORS_DTYPES

_TAGS = {v: k for k, v in SAFETENSORS_DTYPES.items()}
_MAX_OTHER_JSON = 64 << 10
_MAX_SKIPPED = 50


def save(path: str, items: list[tuple[str, Any]], torch: Any, *, source: str,
         object_type: str, other: dict[str, Any]) -> dict[str, Any]:
    """Write ``items`` (key, tensor) to ``path`` (which exists, empty); what was written."""
    kept, aliases, skipped = _select(items, torch)
    meta: dict[str, str] = {"format": "pt", "pttui.source": os.path.basename(source),
                            "pttui.object": object_type}
    if aliases:
        meta["pttui.aliases"] = json.dumps(aliases, separators=(",", ":"))
    plain = json.dumps(other, default=str, separators=(",", ":"))
    if len(plain) <= _MAX_OTHER_JSON:
        meta["pttui.other"] = plain
    # largest elements first: every tensor then starts aligned to its element size
    order = sorted(kept, key=lambda kv: -kv[1].element_size())
    spans, pos = {}, 0
    for key, t in order:
        n = t.numel() * t.element_size()
        spans[key], pos = [pos, pos + n], pos + n
    header: dict[str, Any] = {"__metadata__": meta}
    for key, t in kept:  # the header keeps the checkpoint's order
        header[key] = {"dtype": _TAGS[str(t.dtype).removeprefix("torch.")],
                       "shape": list(t.shape), "data_offsets": spans[key]}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _key, t in order:
            data = t.detach().to("cpu").contiguous().reshape(-1)
            if data.numel():
                f.write(data.view(torch.uint8).numpy())
            del data
        f.flush()
        os.fsync(f.fileno())
    return {"tensors": len(order), "bytes": pos, "aliases": len(aliases),
            "skipped": skipped[:_MAX_SKIPPED], "skipped_count": len(skipped)}


def _select(items: list[tuple[str, Any]], torch: Any
            ) -> tuple[list[tuple[str, Any]], dict[str, str], list[str]]:
    """The tensors to write, the names that alias one of them, and what cannot be stored."""
    kept: list[tuple[str, Any]] = []
    aliases: dict[str, str] = {}
    skipped: list[str] = []
    first: dict[tuple, str] = {}
    for key, t in items:
        why = _unstorable(t, torch)
        if why:
            skipped.append(f"{key}: {why}")
            continue
        view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                tuple(t.stride()), t.dtype, str(t.device))
        if t.numel() and view in first:
            aliases[key] = first[view]
            continue
        first.setdefault(view, key)
        kept.append((key, t))
    return kept, aliases, skipped


def _unstorable(t: Any, torch: Any) -> str | None:
    try:
        if t.layout != torch.strided:
            return f"{str(t.layout).removeprefix('torch.')} layout"
        if t.is_quantized:
            return "quantized"
        if t.device.type == "meta":
            return "on the meta device (no data)"
        if getattr(t, "is_nested", False):
            return "nested tensor"
        if str(t.dtype).removeprefix("torch.") not in _TAGS:
            return f"dtype {str(t.dtype).removeprefix('torch.')} has no safetensors type"
        t.untyped_storage()
    except Exception as err:  # noqa: BLE001 - a tensor subclass that hides its data
        return f"no plain storage ({type(err).__name__})"
    return None
