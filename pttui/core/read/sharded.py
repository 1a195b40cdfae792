"""A Hugging Face sharded set (``*.index.json`` + shard files) -> one :class:`Checkpoint`
whose keys are in the index's order, each shard read by its own format's door."""

from __future__ import annotations

import json
import os

from pttui.core.base.meta import Checkpoint, Container, GlobalsScan, ReadError, TensorMeta
from pttui.core.read import containers as ct
from pttui.core.read import formats, weightsfile
from pttui.core.read.weightsfile import inside, one_line


def read(index_path: str, unpickle_only: bool = False) -> Checkpoint:
    with open(index_path, encoding="utf-8") as f:
        doc = json.load(f)
    folder = os.path.dirname(os.path.abspath(index_path))
    weight_map = doc["weight_map"]
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(key, str) or not isinstance(shard, str):
            raise ReadError(f"{index_path}: weight_map must map tensor names to file names")
        shards.setdefault(shard, []).append(key)
    tensors: dict[str, TensorMeta] = {}
    notes: list[str] = []
    scan = GlobalsScan()
    for shard, keys in shards.items():
        shard_path = inside(folder, shard, index_path, "shard")
        fmt = formats.detect(shard_path)
        if fmt not in weightsfile.FORMATS:
            raise ReadError(f"{index_path}: shard {one_line(shard)} is a {fmt} file, not "
                            "a weights file")
        part = weightsfile.read(shard_path, fmt, shard, unpickle_only)
        if unpickle_only:
            continue  # every shard's pickle is what the preflight must see end
        got = part.tensors
        missing = [k for k in keys if k not in got]
        if missing:
            raise ReadError(f"{index_path}: {len(missing)} tensors the index places in {shard} "
                            f"are not there (first: {missing[0]}); the set is incomplete")
        extra = len(got) - len(keys)
        if extra > 0:
            notes.append(f"{shard} holds {extra} tensors the index does not list")
        for k in keys:
            tensors[k] = got[k]
        for cls in ("allowed", "blocked", "dangerous", "calls"):
            getattr(scan, cls).extend(getattr(part.globals, cls))
        notes.extend(f"{shard}: {n}" for n in part.notes)
    if unpickle_only:
        return Checkpoint(index_path, formats.SHARDED, [], None, GlobalsScan(), {}, [])
    tensors = {k: tensors[k] for k in weight_map}  # the index's order, not shard order
    scan = GlobalsScan(*(sorted(set(getattr(scan, c))) for c in ("allowed", "blocked",
                                                                   "dangerous", "calls")))
    other = {k: v for k, v in doc.items() if k != "weight_map"}
    ckpt = Checkpoint(index_path, formats.SHARDED, [Container((), tensors)], (), scan,
                      ct.summarize(other) if other else {}, notes)
    ckpt.shards = sorted(shards)
    return ckpt
