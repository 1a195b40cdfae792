"""The fit planner against accelerate itself: the same device for every module.

pttui plans from the file's header (read by pttui's own reader, tied weights found
through shared storages); accelerate plans from the model built on the meta device.
Both get the same budgets; every tensor must land on the same device, and the
balanced budgets of ``device_map="auto"`` must be equal.
Modules without tensors (ReLU, pooling) are in accelerate's map and not in a file:
they hold nothing to place, so the comparison is the device of every tensor.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
accelerate_modeling = pytest.importorskip("accelerate.utils.modeling")

from pttui.core.device import placement as pl  # noqa: E402
from pttui.core.device import plan as fp  # noqa: E402
from pttui.core.device.devices import CpuInfo, DeviceSnapshot, GpuInfo  # noqa: E402
from pttui.core.read import open_checkpoint  # noqa: E402

MIB = 1 << 20


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=1000, n_positions=128,
                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg)


def _models():
    import torchvision

    torch.manual_seed(0)
    yield "resnet18", torchvision.models.resnet18(weights=None), ["BasicBlock"]
    yield "mobilenet_v3_small", torchvision.models.mobilenet_v3_small(weights=None), \
        ["InvertedResidual"]
    yield "vit_tiny", torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
        mlp_dim=64, num_classes=10), ["EncoderBlock"]
    yield "gpt2_tiny", _tiny_gpt2(), ["GPT2Block"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Each model saved with torch.save (ties kept as shared storages), read back."""
    out = {}
    folder = tmp_path_factory.mktemp("plans")
    for name, model, blocks in _models():
        path = folder / f"{name}.pt"
        torch.save(model.state_dict(), path)
        ckpt = open_checkpoint(str(path))
        metas = list(ckpt.tensors.values())
        if hasattr(model, "tie_weights"):
            model.tie_weights()
        out[name] = (model, metas, blocks)
    return out


def _block_names(model, classes):
    return frozenset(n for n, m in model.named_modules() if type(m).__name__ in classes)


def _budgets(total: int) -> list[dict]:
    """Machines that make accelerate split, offload and spill to disk."""
    f = lambda x: int(total * x)  # noqa: E731
    return [
        {0: f(2.0), "cpu": f(4)},                                  # one roomy GPU
        {0: f(0.6), "cpu": f(4)},                                  # one GPU, offload
        {0: f(0.45), 1: f(0.45), "cpu": f(4)},                     # two GPUs, tight
        {0: f(0.3), 1: f(0.3), 2: f(0.3), "cpu": f(0.3)},          # three and the CPU
        {i: f(0.14) for i in range(8)} | {"cpu": f(1)},            # eight GPUs
        {0: 0, 1: f(0.7), "cpu": f(2)},                            # a full GPU first
        {0: f(0.2), "cpu": f(0.3)},                                # spills to disk
        {"cpu": f(3)},                                             # no GPU
        {"cpu": f(0.4)},                                           # no GPU, disk
    ] + [_random_budget(total, seed) for seed in range(24)]


def _random_budget(total: int, seed: int) -> dict:
    import random

    rng = random.Random(seed)
    gpus = {i: int(total * rng.uniform(0, 0.8)) for i in range(rng.randint(0, 8))}
    return gpus | {"cpu": int(total * rng.uniform(0.05, 1.5))}


@pytest.mark.filterwarnings("ignore:Current model requires")  # accelerate's offload note
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_tiny", "gpt2_tiny"])
@pytest.mark.parametrize("split", ["whole blocks", "anything"])
def test_the_device_map_is_accelerates(cases, name, split):
    model, metas, classes = cases[name]
    lay = fp.layout(metas)
    assert int(lay.size("")) == sum(p.numel() * p.element_size() for p in model.parameters()) \
        + sum(b.numel() * b.element_size() for b in model.buffers())
    no_split_classes = classes if split == "whole blocks" else []
    names = _block_names(model, no_split_classes)
    for budget in _budgets(int(lay.size(""))):
        theirs = accelerate_modeling.infer_auto_device_map(
            model, max_memory=dict(budget), no_split_module_classes=no_split_classes)
        ours = pl.infer_device_map(lay, dict(budget), names.__contains__)
        # modules without tensors (ReLU, pooling) are not in a file; every tensor is
        where = {t.key: pl.device_of(t.key, ours) for t in metas}
        assert where == {t.key: pl.device_of(t.key, theirs) for t in metas}, \
            f"{name} with {budget}"
        assert all(theirs.get(k, v) == v for k, v in ours.items())


@pytest.mark.parametrize("name", ["resnet18", "gpt2_tiny"])
def test_numbered_blocks_are_the_models_blocks(cases, name):
    """The default no_split (innermost numbered modules) names exactly the residual
    blocks transformers and torchvision define as classes."""
    model, metas, classes = cases[name]
    assert fp.layout(metas).blocks() == _block_names(model, classes)


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny", "gpt2_tiny"])
@pytest.mark.parametrize("low_zero", [False, True])
def test_balanced_budgets_are_accelerates(cases, name, low_zero):
    model, metas, classes = cases[name]
    lay = fp.layout(metas)
    names = _block_names(model, classes)
    total = int(lay.size(""))
    for budget in ({0: total, 1: total, "cpu": 4 * total},
                   {0: total // 3, 1: total, 2: total, "cpu": total},
                   {0: 2 * total, "cpu": total}):
        theirs = accelerate_modeling.get_balanced_memory(
            model, max_memory=dict(budget), no_split_module_classes=classes,
            low_zero=low_zero)
        ours = pl.balanced_memory(lay, dict(budget), True, names.__contains__, low_zero,
                                  kind=lambda n: type(model.get_submodule(n)).__name__)
        assert ours == theirs, f"{name} with {budget}"


def test_a_lone_gpu_keeps_a_tenth_back_like_accelerate(cases, monkeypatch):
    """With no max_memory given, accelerate uses 90% of a lone GPU: so does pttui's plan
    from a snapshot (checked through accelerate's own path, its device query replaced
    by the snapshot's figures)."""
    model, metas, classes = cases["resnet18"]
    lay = fp.layout(metas)
    budget = {0: int(lay.size("")) * 2, "cpu": int(lay.size("")) * 3}
    monkeypatch.setattr(accelerate_modeling, "get_max_memory",
                        lambda m=None: dict(budget) if m is None else m)
    theirs = accelerate_modeling.get_balanced_memory(model, no_split_module_classes=classes)
    ours = pl.balanced_memory(lay, dict(budget), False, _block_names(model, classes).__contains__)
    assert ours == theirs and ours[0] == pytest.approx(budget[0] * 0.9)


def test_tied_weights_count_once_and_stay_together(cases):
    model, metas, _ = cases["gpt2_tiny"]
    lay = fp.layout(metas)
    assert ["transformer.wte.weight", "lm_head.weight"] in lay.tied
    assert lay.size("lm_head") == 0
    snap = _snap([fp.CUDA_CONTEXT + 200 * MIB], ram=4096 * MIB)
    p = fp.plan(metas, snap)
    assert p.kind == "gpu" and p.device_map == {"": 0}
    assert p.bytes == sum(t.numel() * t.element_size() for t in model.state_dict().values()
                          if t.data_ptr() != model.lm_head.weight.data_ptr()) \
        + model.lm_head.weight.numel() * 4


def _snap(free: list[int], ram: int, names: list[str] | None = None) -> DeviceSnapshot:
    gpus = [GpuInfo(i, i, name=(names or ["Fake GPU"] * len(free))[i], uuid=f"GPU-{i}",
                    memory_total=f + 1024 * MIB, memory_used=1024 * MIB, memory_free=f)
            for i, f in enumerate(free)]
    return DeviceSnapshot(CpuInfo(8, 4, 8, 2 * ram, ram), gpus, "nvml" if gpus else None,
                          None if gpus else "NVML not available: test")


def test_verdicts_a_user_can_act_on(cases):
    _, metas, _ = cases["resnet18"]
    total = int(fp.layout(metas).size(""))
    ctx = fp.CUDA_CONTEXT
    roomy = fp.plan(metas, _snap([ctx + 10 * total], ram=10 * total))
    assert roomy.kind == "gpu" and roomy.verdict.startswith("fits on cuda:0 with ")
    assert roomy.map_location == 'map_location="cuda:0"' and roomy.fits
    two = fp.plan(metas, _snap([ctx + total // 2, ctx + total], ram=10 * total))
    assert two.kind == "gpus" and two.verdict.startswith("needs 2 GPUs: cuda:0 ")
    assert set(two.per_device) == {0, 1} and sum(two.per_device.values()) == total
    off = fp.plan(metas, _snap([ctx + total // 2], ram=10 * total))
    assert off.kind == "offload" and "offload" in off.verdict and "to CPU" in off.verdict
    assert off.map_location == 'map_location="cpu", mmap=True'
    cpu = fp.plan(metas, _snap([], ram=10 * total))
    assert cpu.kind == "cpu" and cpu.verdict.startswith("fits in RAM with ")
    disk = fp.plan(metas, _snap([], ram=total // 2))
    assert disk.kind == "disk" and not disk.fits and "to disk" in disk.verdict
    full = fp.plan(metas, _snap([0], ram=10 * total))
    assert full.kind == "offload" and "does not fit on any GPU" in full.verdict


def test_casting_to_bf16_halves_the_float_weights(cases):
    _, metas, _ = cases["resnet18"]
    stored, cast = fp.layout(metas), fp.layout(metas, "bfloat16")
    ints = sum(t.nbytes for t in metas if t.dtype.startswith("int"))
    assert int(cast.size("")) == (int(stored.size("")) - ints) // 2 + ints
