#!/usr/bin/env python
"""Regenerate pttui's sample checkpoints.

    python sample_checkpoints/generate.py [OUTDIR]      (default: this folder)

Every sample is made by real torch / torchvision / safetensors writers from models
initialised with a fixed seed; nothing is downloaded (``weights=None`` everywhere).
Running it twice gives byte-identical files with the same library versions; the
versions used are recorded in MANIFEST.json next to a sha256 of every file.

What it takes to be byte-identical (see the code for details):
  * PYTHONHASHSEED=0 (the script re-runs itself with it) -- TorchScript orders
    module constants by iterating a set of strings;
  * no float that a kernel computed: torch's random init and its fused optimizer
    kernels round differently on different CPUs (vector widths, FMA), so every
    random value comes from an integer RNG scaled by one correctly rounded multiply
    (``exact_init``), and the optimizer and EMA steps are written out one IEEE
    operation at a time (``train_one_step``);
  * ``tiny_vit_legacy.pt``: storage keys renumbered (torch names them after memory
    addresses);
  * ``tiny_vit_torchscript.pt``: debug records, which embed the absolute path of the
    local torch install, dropped;
  * ``tiny_vit_dcp/.metadata``: a fixed save id instead of a random uuid4.
"""

import os
import subprocess
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # torch.jit.script orders a module's constants by iterating a set of strings,
    # so the TorchScript sample depends on the string hash seed.  Pin it.
    env = dict(os.environ, PYTHONHASHSEED="0")
    sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import pickletools  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.checkpoint.metadata import StorageMeta  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # so that TinyNet pickles as `models.TinyNet`

from targets import tiny_gpt, tiny_vit  # noqa: E402

SEED = 0
SHARDS = 2
MANIFEST = "MANIFEST.json"


# --------------------------------------------------------------------------- models


def exact_random(shape, bound: float, seed: int) -> torch.Tensor:
    """Uniform values in [-bound, bound) that are the same bytes on every CPU: integers
    from torch's integer RNG, times ``bound / 2**23`` in float64 (one correctly rounded
    multiply), rounded to float32 once."""
    ints = torch.randint(-2**23, 2**23, tuple(shape), generator=torch.Generator().manual_seed(seed))
    return (ints.double() * (bound / 2**23)).float()


def exact_init(module: nn.Module, seed: int) -> nn.Module:
    """Replace every tensor that the module's own init made random with ``exact_random``
    values of the usual scale (1/sqrt(fan_in)); constants (ones, zeros) are exact
    already and stay."""
    with torch.no_grad():
        for i, t in enumerate(module.state_dict(keep_vars=True).values()):
            flat = t.detach().reshape(-1)
            if not t.is_floating_point() or t.numel() == 0 or bool((flat == flat[0]).all()):
                continue
            fan_in = t[0].numel() if t.dim() > 1 else t.numel()
            t.copy_(exact_random(t.shape, 1 / math.sqrt(fan_in), seed * 1000 + i))
    return module


def squeezenet() -> nn.Module:
    return exact_init(torchvision.models.squeezenet1_1(weights=None), SEED)


def tiny_vit_model() -> nn.Module:
    return exact_init(tiny_vit(), SEED)


def tiny_vit_sd() -> dict:
    return tiny_vit_model().state_dict()


def seeded_gradients(model: nn.Module) -> dict:
    """Gradients from a seeded RNG rather than a forward/backward pass (matmul kernels
    round differently on different CPUs)."""
    return {p: exact_random(p.shape, 0.01, (SEED + 1) * 1000 + i)
            for i, p in enumerate(model.parameters())}


def _as_stored(values: dict) -> dict:
    return {p: v.to(torch.float32) for p, v in values.items()}


def train_one_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step, which moves the weights and fills the optimizer state.

    torch's own step fuses operations (``addcdiv``, ``lerp``, ``add(alpha=)``) in
    kernels that round differently on different CPUs, so its bytes are not the same
    everywhere. This step follows the optimizer's update rule one IEEE operation at a
    time in float64 (each correctly rounded, on any CPU), then rounds to float32 once.
    It is checked against torch's own step on a copy of the model, to 1e-6.
    """
    grads = seeded_gradients(model)
    (group,) = optimizer.param_groups
    with torch.no_grad():
        if isinstance(optimizer, torch.optim.Adam):
            beta1, beta2 = group["betas"]
            step_size = group["lr"] / (1 - beta1)
            exp_avg = {p: g.double() * (1 - beta1) for p, g in grads.items()}
            exp_avg_sq = {p: (g.double() * g.double()) * (1 - beta2) for p, g in grads.items()}
            new = {p: p.double() - (exp_avg[p] / (exp_avg_sq[p].sqrt() / (1 - beta2) ** 0.5
                                                  + group["eps"])) * step_size
                   for p in grads}
            state = {p: {"step": torch.tensor(1.0), "exp_avg": exp_avg[p].float(),
                         "exp_avg_sq": exp_avg_sq[p].float()} for p in grads}
        elif isinstance(optimizer, torch.optim.SGD):
            buf = {p: g.double() + p.double() * group["weight_decay"] for p, g in grads.items()}
            new = {p: p.double() - buf[p] * group["lr"] for p in grads}
            state = {p: {"momentum_buffer": buf[p].float()} for p in grads}
        else:
            raise TypeError(f"no deterministic step for {type(optimizer).__name__}")
        _check_against_torch(model, optimizer, grads, _as_stored(new), state)
        for p, value in _as_stored(new).items():
            p.copy_(value)
    optimizer.state.update(state)


def _check_against_torch(model, optimizer, grads, new, state) -> None:
    """torch's own step on a copy gives the same weights and state, up to rounding."""
    import copy

    twin = copy.deepcopy(model)
    twin_opt = type(optimizer)(twin.parameters(), **optimizer.defaults)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = grads[p].clone()
    twin_opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        theirs = twin_opt.state[q]
        assert set(theirs) == set(state[p]), (sorted(theirs), sorted(state[p]))
        for name, value in [("weight", new[p]), *state[p].items()]:
            ref = q if name == "weight" else theirs[name]
            if not torch.allclose(value, ref, rtol=1e-6, atol=1e-9):
                raise AssertionError(f"deterministic {type(optimizer).__name__} step: {name} "
                                     f"differs from torch's by {(value - ref).abs().max():.3g}")


# ------------------------------------------------------------------ post-processing


def renumber_legacy_storage_keys(raw: bytes, state_dict: dict) -> bytes:
    """Make a legacy-format (pre-zip) torch.save file deterministic.

    The legacy writer names each storage ``str(storage._cdata)`` -- a memory address --
    and writes the storages sorted by that name.  Rename them "0", "1", ... in order of
    first use and write the storages in sorted-new-name order, as torch itself would.
    Layout: magic, protocol, sys_info, object pickle, key-list pickle, then per key an
    int64 element count followed by the raw bytes.
    """
    element_size = {
        str(t.untyped_storage()._cdata): t.element_size() for t in state_dict.values()
    }
    buf = io.BytesIO(raw)
    for _ in range(3):  # magic number, protocol version, sys_info
        pickle.load(buf)
    head = raw[: buf.tell()]

    ops = list(pickletools.genops(raw[buf.tell() :]))
    obj_end = buf.tell() + ops[-1][2] + 1  # ops[-1] is STOP
    new_name: dict[str, str] = {}
    obj_pickle = bytearray()
    body = raw[buf.tell() : obj_end]
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(body)
        if op.name == "BINUNICODE" and arg in element_size:
            name = new_name.setdefault(arg, str(len(new_name))).encode()
            obj_pickle += b"X" + struct.pack("<I", len(name)) + name
        else:
            obj_pickle += body[pos:end]

    buf.seek(obj_end)
    old_keys = pickle.load(buf)
    if set(old_keys) != set(element_size) or set(old_keys) != set(new_name):
        raise RuntimeError("legacy storage keys do not match the state_dict storages")
    blobs = {}
    for key in old_keys:
        (count,) = struct.unpack("<q", buf.read(8))
        blobs[new_name[key]] = struct.pack("<q", count) + buf.read(count * element_size[key])
    if buf.read():
        raise RuntimeError("unexpected trailing bytes in legacy checkpoint")

    new_keys = sorted(blobs)
    return (
        head
        + bytes(obj_pickle)
        + pickle.dumps(new_keys, protocol=2)
        + b"".join(blobs[k] for k in new_keys)
    )


def strip_torchscript_debug_info(path: Path) -> None:
    """Rewrite a TorchScript archive without its ``*.debug_pkl`` records.

    Those hold source ranges with the absolute path of torch/torchvision on the
    machine that scripted the model, so the file would differ between installs.
    The archive is rewritten with torch's own zip writer; torch.jit.load does not
    need the debug records.
    """
    reader = torch._C.PyTorchFileReader(str(path))
    records = {name: reader.get_record(name) for name in reader.get_all_records()}
    version = int(records[".data/version"])
    del reader
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.set_min_version(version)
    for name, data in records.items():
        # the writer adds the version and serialization_id records itself
        if name.endswith(".debug_pkl") or name in (".data/version", "version", ".data/serialization_id"):
            continue
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()


# ---------------------------------------------------------- a GPU tag without a GPU

_tag_storages_as_cuda = False


def _cuda_tagger(storage):
    return "cuda:0" if _tag_storages_as_cuda else None


def _no_deserializer(storage, location):
    return None


@contextlib.contextmanager
def storages_tagged_cuda():
    """While active, torch.save records every storage as living on ``cuda:0``.

    Uses torch's public ``register_package`` hook, the same mechanism torch uses to
    tag real CUDA storages; outside this block the tagger returns None (no effect).
    """
    global _tag_storages_as_cuda
    if not getattr(storages_tagged_cuda, "registered", False):
        torch.serialization.register_package(-100, _cuda_tagger, _no_deserializer)
        storages_tagged_cuda.registered = True
    _tag_storages_as_cuda = True
    try:
        yield
    finally:
        _tag_storages_as_cuda = False


# ------------------------------------------------------------------- the payload

MALICIOUS_CODE = """\
import os, tempfile
marker_dir = os.environ.get("PTTUI_SAMPLE_MARKER_DIR") or tempfile.gettempdir()
with open(os.path.join(marker_dir, "pttui_malicious_ran"), "w") as f:
    f.write("malicious.pt ran code while being unpickled\\n")
"""


class RunsCodeWhenUnpickled:
    """Pickles as a call to builtins.exec(MALICIOUS_CODE)."""

    def __reduce__(self):
        return (exec, (MALICIOUS_CODE,))


# ------------------------------------------------------------------------- samples


def squeezenet1_1(out: Path) -> str:
    """Clean torchvision squeezenet1_1 state_dict; loads strictly."""
    torch.save(squeezenet().state_dict(), out / "squeezenet1_1.pt")
    return "squeezenet1_1.pt"


def squeezenet1_1_dataparallel(out: Path) -> str:
    """Saved through nn.DataParallel: every key starts with `module.`."""
    torch.save(nn.DataParallel(squeezenet()).state_dict(), out / "squeezenet1_1_dataparallel.pt")
    return "squeezenet1_1_dataparallel.pt"


def squeezenet1_1_compiled(out: Path) -> str:
    """Saved through torch.compile: every key starts with `_orig_mod.` (nothing compiled)."""
    torch.save(torch.compile(squeezenet()).state_dict(), out / "squeezenet1_1_compiled.pt")
    return "squeezenet1_1_compiled.pt"


def squeezenet1_1_finetuned_10cls(out: Path) -> str:
    """A 10-class fine-tune: classifier.1 is [10, 512, 1, 1], not [1000, 512, 1, 1].

    Made the way fine-tuning is done: the 1000-class model with a new head, so the
    backbone weights are those of squeezenet1_1.pt.
    """
    model = squeezenet()
    model.classifier[1] = exact_init(nn.Conv2d(512, 10, kernel_size=1), SEED + 2)
    torch.save(model.state_dict(), out / "squeezenet1_1_finetuned_10cls.pt")
    return "squeezenet1_1_finetuned_10cls.pt"


def tiny_vit_lightning(out: Path) -> str:
    """Lightning-style training checkpoint; weights under `model.`; plain types only."""
    model = tiny_vit_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    train_one_step(model, optimizer)
    with warnings.catch_warnings():  # the step above is ours, not optimizer.step()
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
        for _ in range(3):
            scheduler.step()
    checkpoint = {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {"model." + k: v for k, v in model.state_dict().items()},
        "callbacks": {},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "num_classes": 10,
            "lr": 0.001,
            "image_size": 32,
            "patch_size": 8,
            "hidden_dim": 32,
        },
    }
    torch.save(checkpoint, out / "tiny_vit_lightning.ckpt")
    return "tiny_vit_lightning.ckpt"


def tiny_vit_renamed(out: Path) -> str:
    """Old key names: LayerNorm .gamma/.beta, and encoder.blocks.N instead of
    encoder.layers.encoder_layer_N."""
    model = tiny_vit_model()
    layer_norms = {name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    renamed = {}
    for key, value in model.state_dict().items():
        module, _, param = key.rpartition(".")
        if module in layer_norms:
            key = f"{module}." + {"weight": "gamma", "bias": "beta"}[param]
        key = re.sub(r"^encoder\.layers\.encoder_layer_(\d+)\.", r"encoder.blocks.\1.", key)
        renamed[key] = value
    torch.save(renamed, out / "tiny_vit_renamed.pt")
    return "tiny_vit_renamed.pt"


def tinynet_whole_model(out: Path) -> str:
    """torch.save(model): a whole pickled nn.Module whose class is `models.TinyNet`."""
    import models  # noqa: PLC0415  (leaves models.py's marker file, as any import does)

    torch.save(exact_init(models.TinyNet(), SEED).eval(), out / "tinynet_whole_model.pt")
    return "tinynet_whole_model.pt"


def tiny_vit_cuda(out: Path) -> str:
    """State_dict whose storages are tagged cuda:0, as if saved on a GPU."""
    with storages_tagged_cuda():
        torch.save(tiny_vit_sd(), out / "tiny_vit_cuda.pt")
    return "tiny_vit_cuda.pt"


def tiny_vit_training_state(out: Path) -> str:
    """Training checkpoint with an argparse.Namespace and a numpy scalar in it."""
    model = tiny_vit_model()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    train_one_step(model, optimizer)
    with torch.no_grad():  # one EMA update: slightly different from the model (float64
        for k, v in model.state_dict().items():  # one rounding per op, as in train_one_step)
            if v.is_floating_point():
                ema[k] = (ema[k].double() * 0.99 + v.double() * 0.01).to(v.dtype)
    checkpoint = {
        "model": model.state_dict(),
        "model_ema": ema,
        "optimizer": optimizer.state_dict(),
        "args": argparse.Namespace(lr=0.1, epochs=90, arch="tiny_vit"),
        "best_acc1": np.float64(0.913),
        "epoch": 12,
    }
    torch.save(checkpoint, out / "tiny_vit_training_state.pt")
    return "tiny_vit_training_state.pt"


def malicious(out: Path) -> str:
    """Real weights plus an entry that calls builtins.exec when unpickled (harmless:
    it writes the marker file pttui_malicious_ran)."""
    checkpoint = {"state_dict": tiny_vit_sd(), "epoch": 1, "callback": RunsCodeWhenUnpickled()}
    torch.save(checkpoint, out / "malicious.pt")
    return "malicious.pt"


def truncated(out: Path) -> str:
    """A valid checkpoint cut to half its bytes (an interrupted copy/download)."""
    path = out / "truncated.pt"
    torch.save(tiny_vit_sd(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated.pt"


def tiny_vit_legacy(out: Path) -> str:
    """Pre-1.6 (non-zip) serialization format."""
    sd = tiny_vit_sd()
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    (out / "tiny_vit_legacy.pt").write_bytes(renumber_legacy_storage_keys(buf.getvalue(), sd))
    return "tiny_vit_legacy.pt"


def tiny_vit_torchscript(out: Path) -> str:
    """A TorchScript archive (torch.jit.save), not a torch.save checkpoint."""
    path = out / "tiny_vit_torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.script is deprecated"
        torch.jit.save(torch.jit.script(tiny_vit_model().eval()), path)
    strip_torchscript_debug_info(path)
    return "tiny_vit_torchscript.pt"


def tiny_vit_safetensors(out: Path) -> str:
    """Single-file safetensors."""
    safetensors.torch.save_file(tiny_vit_sd(), out / "tiny_vit.safetensors", metadata={"format": "pt"})
    return "tiny_vit.safetensors"


def _split_in_shards(sd: dict) -> list[dict]:
    """Consecutive keys, about the same number of bytes per shard."""
    total = sum(v.numel() * v.element_size() for v in sd.values())
    shards = [{} for _ in range(SHARDS)]
    seen = 0
    for k, v in sd.items():
        shards[min(SHARDS - 1, seen * SHARDS // total)][k] = v
        seen += v.numel() * v.element_size()
    return shards


def _write_index(path: Path, shard_names: list[str], shards: list[dict]) -> None:
    index = {
        "metadata": {
            "total_size": sum(v.numel() * v.element_size() for s in shards for v in s.values())
        },
        "weight_map": {k: name for name, shard in zip(shard_names, shards) for k in shard},
    }
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def tiny_vit_sharded(out: Path) -> str:
    """Hugging Face sharded safetensors: two shards + model.safetensors.index.json."""
    folder = _fresh_dir(out / "tiny_vit_sharded")
    shards = _split_in_shards(tiny_vit_sd())
    names = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    for name, shard in zip(names, shards):
        safetensors.torch.save_file(shard, folder / name, metadata={"format": "pt"})
    _write_index(folder / "model.safetensors.index.json", names, shards)
    return "tiny_vit_sharded/"


def tiny_vit_sharded_bin(out: Path) -> str:
    """Hugging Face sharded .bin: two torch.save shards + pytorch_model.bin.index.json."""
    folder = _fresh_dir(out / "tiny_vit_sharded_bin")
    shards = _split_in_shards(tiny_vit_sd())
    names = [f"pytorch_model-{i:05d}-of-{SHARDS:05d}.bin" for i in range(1, SHARDS + 1)]
    for name, shard in zip(names, shards):
        torch.save(shard, folder / name)
    _write_index(folder / "pytorch_model.bin.index.json", names, shards)
    return "tiny_vit_sharded_bin/"


class FixedIdFileSystemWriter(dcp.FileSystemWriter):
    """DCP's file writer, but the .metadata records a fixed save id (normally a
    random uuid4) and the folder name instead of its absolute path."""

    def storage_meta(self):
        return StorageMeta(checkpoint_id=self.path.name, save_id="pttui-sample")


def tiny_vit_dcp(out: Path) -> str:
    """torch.distributed.checkpoint directory (.metadata + *.distcp), one process."""
    folder = _fresh_dir(out / "tiny_vit_dcp")
    with warnings.catch_warnings():
        # "torch.distributed is disabled, unavailable or uninitialized, assuming
        # the intent is to save in a single process."
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(tiny_vit_sd(), storage_writer=FixedIdFileSystemWriter(folder), no_dist=True)
    return "tiny_vit_dcp/"


def tiny_vit_optimizer_only(out: Path) -> str:
    """Only an Adam optimizer state_dict -- no weights (the wrong file was grabbed)."""
    model = tiny_vit_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_one_step(model, optimizer)
    torch.save(optimizer.state_dict(), out / "tiny_vit_optimizer_only.pt")
    return "tiny_vit_optimizer_only.pt"


def tiny_gpt_conv1d(out: Path) -> str:
    """GPT-2 weights as Hugging Face stores them: its Conv1D keeps [in, out] where the
    nanoGPT layout (``targets.py:tiny_gpt``) keeps nn.Linear's [out, in]."""
    sd = exact_init(tiny_gpt(), SEED + 3).state_dict()
    conv1d = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
              ".mlp.c_proj.weight")
    stored = {k: v.t().contiguous() if k.endswith(conv1d) else v for k, v in sd.items()
              if k != "lm_head.weight"}  # tied to the token embedding, saved once
    torch.save(stored, out / "tiny_gpt_conv1d.pt")
    return "tiny_gpt_conv1d.pt"


def tiny_vit_qkv_split(out: Path) -> str:
    """Attention saved as separate q/k/v projections, where torchvision's
    MultiheadAttention keeps one fused ``in_proj_weight`` / ``in_proj_bias``."""
    stored = {}
    for k, v in tiny_vit_sd().items():
        head, sep, leaf = k.rpartition(".in_proj_")
        if sep:
            for role, part in zip("qkv", v.chunk(3)):
                stored[f"{head}.{role}_proj.{leaf}"] = part.clone()
        else:
            stored[k] = v
    torch.save(stored, out / "tiny_vit_qkv_split.pt")
    return "tiny_vit_qkv_split.pt"


SAMPLES = [
    squeezenet1_1,
    squeezenet1_1_dataparallel,
    squeezenet1_1_compiled,
    squeezenet1_1_finetuned_10cls,
    tiny_vit_lightning,
    tiny_vit_renamed,
    tinynet_whole_model,
    tiny_vit_cuda,
    tiny_vit_training_state,
    malicious,
    truncated,
    tiny_vit_legacy,
    tiny_vit_torchscript,
    tiny_vit_safetensors,
    tiny_vit_sharded,
    tiny_vit_sharded_bin,
    tiny_vit_dcp,
    tiny_vit_optimizer_only,
    tiny_gpt_conv1d,
    tiny_vit_qkv_split,
]


# ---------------------------------------------------------------------------- main


def sample_files(out: Path, names: list[str]) -> list[Path]:
    files = []
    for name in names:
        path = out / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def write_manifest(out: Path, names: list[str]) -> None:
    manifest = {
        "generated_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
        },
        "sha256": {
            p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sample_files(out, names)
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = []
    for sample in SAMPLES:
        name = sample(out)
        names.append(name)
        size = sum(p.stat().st_size for p in sample_files(out, [name]))
        print(f"{size:>10,}  {name}")
    write_manifest(out, names)


if __name__ == "__main__":
    main(sys.argv[1:])
