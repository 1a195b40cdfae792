"""Generate the benchmark inputs (deterministic; reused when already in the folder).

    python benchmarks/make_inputs.py --workdir /tmp/pttui-bench [--only big,moe]

- ``big.pt``: ~2.5 GB of bf16, 1,984 keys, a DDP-style ``module.`` prefix (a
  120-layer transformer; the largest tensor, the embedding, is 128 MiB);
  ``big_target.pt`` is the same model as meta tensors without the prefix (the
  ``ref:`` target of the export benchmark: a few KB, no torch import to read it).
- ``moe.pt``: a mixture-of-experts-like file, 49,347 small tensors (4 KiB each).
- ``keys100k.pt``: exactly 100,000 tiny tensors, 100 layers x 250 experts x 4; shapes
  vary so no two neighbouring blocks are alike (the key tree cannot fold them into
  one ``{0..99}`` row: the worst case for expanding and filtering).
- ``sharded/``: 2,000 keys in 4 safetensors shards plus ``model.safetensors.index.json``.

Each tensor has its own storage (as ``model.state_dict()`` gives), filled from one
random buffer so generating 2.5 GB takes seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

VERSIONS = {"big": 1, "moe": 1, "keys100k": 2, "sharded": 1}
NAMES = ("big", "moe", "keys100k", "sharded")

HIDDEN, VOCAB, LAYERS = 1024, 65536, 110  # big.pt: 110 x 18 + 4 keys, ~2.47 GB bf16


def _layer_shapes(h: int) -> list[tuple[str, tuple[int, ...]]]:
    """18 tensors per block: q/k/v/o with biases, a 3x MLP, two LayerNorms, qk-norms."""
    out = []
    for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
        out += [(f"attn.{p}.weight", (h, h)), (f"attn.{p}.bias", (h,))]
    out += [("attn.q_norm.weight", (h // 16,)), ("attn.k_norm.weight", (h // 16,))]
    out += [("mlp.fc1.weight", (3 * h, h)), ("mlp.fc1.bias", (3 * h,)),
            ("mlp.fc2.weight", (h, 3 * h)), ("mlp.fc2.bias", (h,))]
    out += [("ln1.weight", (h,)), ("ln1.bias", (h,)), ("ln2.weight", (h,)), ("ln2.bias", (h,))]
    return out


def big_shapes(h: int = HIDDEN, vocab: int = VOCAB, layers: int = LAYERS) -> list:
    shapes = [("embed.weight", (vocab, h))]
    for i in range(layers):
        shapes += [(f"blocks.{i}.{k}", s) for k, s in _layer_shapes(h)]
    shapes += [("norm.weight", (h,)), ("norm.bias", (h,)), ("lm_head.weight", (vocab, h))]
    return shapes


class _Filler:
    """Tensors with their own storage, cut from one random buffer (fast, deterministic)."""

    def __init__(self, dtype, pool: int = 64 << 20) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.pool = torch.randn(pool, generator=g).to(dtype)
        self.pos = 0

    def take(self, shape: tuple[int, ...]):
        import math

        n = math.prod(shape)
        if n > self.pool.numel():
            reps = -(-n // self.pool.numel())
            return self.pool.repeat(reps)[:n].view(shape).clone()
        if self.pos + n > self.pool.numel():
            self.pos = 0
        t = self.pool[self.pos:self.pos + n].view(shape).clone()
        self.pos = (self.pos + 7919) % max(1, self.pool.numel() - 1)
        return t


def make_big(folder: Path) -> None:
    import torch

    fill = _Filler(torch.bfloat16)
    sd = OrderedDict((f"module.{k}", fill.take(s)) for k, s in big_shapes())
    torch.save(sd, folder / "big.pt")
    meta = OrderedDict((k, torch.empty(s, dtype=torch.bfloat16, device="meta"))
                       for k, s in big_shapes())
    torch.save(meta, folder / "big_target.pt")


def make_moe(folder: Path, layers: int = 32, experts: int = 512) -> None:
    """32 layers x 512 experts x (gate, up, down) + attention: 49,347 tensors of 4 KiB."""
    import torch

    fill = _Filler(torch.bfloat16, 1 << 20)
    sd: OrderedDict = OrderedDict()
    sd["model.embed_tokens.weight"] = fill.take((512, 64))
    for i in range(layers):
        p = f"model.layers.{i}"
        for k in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[f"{p}.self_attn.{k}.weight"] = fill.take((64, 64))
        sd[f"{p}.mlp.gate.weight"] = fill.take((experts, 64))
        for e in range(experts):
            for k, s in (("gate_proj", (32, 64)), ("up_proj", (32, 64)), ("down_proj", (64, 32))):
                sd[f"{p}.mlp.experts.{e}.{k}.weight"] = fill.take(s)
        sd[f"{p}.input_layernorm.weight"] = fill.take((64,))
    sd["model.norm.weight"] = fill.take((64,))
    sd["lm_head.weight"] = fill.take((512, 64))
    torch.save(sd, folder / "moe.pt")


def keys100k_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """100 layers x 250 experts x 4 keys: exactly 100,000 names, shapes (1..5,)."""
    return [(f"model.layers.{i}.experts.{e}.{k}", (1 + (7 * i + e) % 5,))
            for i in range(100) for e in range(250)
            for k in ("w1.weight", "w2.weight", "w3.weight", "norm.weight")]


def make_keys100k(folder: Path) -> None:
    import torch

    fill = _Filler(torch.float32, 1 << 16)
    sd = OrderedDict((k, fill.take(s)) for k, s in keys100k_shapes())
    torch.save(sd, folder / "keys100k.pt")


def make_sharded(folder: Path, shards: int = 4) -> None:
    """2,000 keys (~500 MB of bf16) split over ``shards`` files in key order."""
    import torch
    from safetensors.torch import save_file

    out = folder / "sharded"
    out.mkdir(exist_ok=True)
    shapes = big_shapes(h=512, vocab=32000, layers=111)[:2000]
    fill = _Filler(torch.bfloat16)
    per = -(-len(shapes) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: fill.take(s) for k, s in shapes[i * per:(i + 1) * per]}
        save_file(part, str(out / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in part.values())
        weight_map.update({k: name for k in part})
    with open(out / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)


_MAKERS = {"big": make_big, "moe": make_moe, "keys100k": make_keys100k,
           "sharded": make_sharded}
PATHS = {"big": "big.pt", "moe": "moe.pt", "keys100k": "keys100k.pt",
         "sharded": "sharded/model.safetensors.index.json"}


def ensure(folder: Path, names: tuple[str, ...] | list[str], quiet: bool = False
           ) -> dict[str, Path]:
    """Make each named input in ``folder`` unless a finished one of this version is there."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        done = folder / f".{name}.v{VERSIONS[name]}.done"
        if not done.exists():
            t0 = time.perf_counter()
            if not quiet:
                print(f"generating {name} in {folder} ...", file=sys.stderr, flush=True)
            _MAKERS[name](folder)
            done.touch()
            if not quiet:
                print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        out[name] = folder / PATHS[name]
    return out


def describe(paths: dict[str, Path]) -> list[str]:
    lines = []
    for name, p in paths.items():
        files = list(p.parent.glob("*.safetensors")) if name == "sharded" else [p]
        size = sum(os.path.getsize(f) for f in files)
        lines.append(f"{name}: {p} ({size / 1e9:.2f} GB)")
    return lines


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--only", default=",".join(NAMES), help="comma-separated: " + ", ".join(NAMES))
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown input(s): {', '.join(sorted(unknown))}")
    print("\n".join(describe(ensure(Path(args.workdir), names))))


if __name__ == "__main__":
    main()
