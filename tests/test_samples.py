"""The sample checkpoints in sample_checkpoints/ are what their README says they are.

Everything here is checked with real torch / safetensors, never with pttui.  The
tiny_vit reference weights come from ``tiny_vit.safetensors`` (every tiny_vit sample
holds the same weights) and the squeezenet ones from ``squeezenet1_1.pt``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
import torch.distributed.checkpoint as dcp
import torchvision

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints"
GENERATOR = SAMPLES / "generate.py"
MANIFEST = json.loads((SAMPLES / "MANIFEST.json").read_text())
# Everything in the folder that generate.py does not write.
NOT_GENERATED = {"generate.py", "models.py", "targets.py", "README.md", "MANIFEST.json"}
CUDA_MESSAGE = "Attempting to deserialize object on a CUDA device"


def _load_targets():
    # By path, so sample_checkpoints/ never lands on sys.path (that would make the
    # pickled `models.TinyNet` importable in this process).
    spec = importlib.util.spec_from_file_location("pttui_sample_targets", SAMPLES / "targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_vit = _load_targets().tiny_vit


def sample(name: str) -> Path:
    return SAMPLES / name


def generated_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.relative_to(folder).as_posix() not in NOT_GENERATED
    )


def load(name: str, **kwargs):
    return torch.load(sample(name), map_location="cpu", weights_only=True, **kwargs)


@pytest.fixture(scope="module")
def vit_reference() -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(sample("tiny_vit.safetensors"))


@pytest.fixture(scope="module")
def squeezenet_reference() -> dict[str, torch.Tensor]:
    return load("squeezenet1_1.pt")


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def strip_prefix(sd: dict, prefix: str) -> dict:
    assert all(k.startswith(prefix) for k in sd), f"not every key starts with {prefix!r}"
    return {k[len(prefix):]: v for k, v in sd.items()}


def run_python(code: str, marker_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter whose markers land in marker_dir."""
    env = dict(os.environ, PTTUI_SAMPLE_MARKER_DIR=str(marker_dir), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )


def _tensors_in(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a sample, by its path in the file (plain data only: nothing runs)."""
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(path)
    found: dict[str, torch.Tensor] = {}

    def walk(value, where: str) -> None:
        if isinstance(value, torch.Tensor):
            found[where] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return found


def how_they_differ(new: Path, old: Path) -> str:
    """Which tensors differ and by how much; else which zip records; else where the bytes do."""
    try:
        a, b = _tensors_in(new), _tensors_in(old)
    except Exception:  # noqa: BLE001 - not plain data (pickled code, a cut-off file): compare records
        a = b = None
    if a is not None and set(a) != set(b):
        return f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}"
    if a is not None:
        rows = []
        for key in a:
            x, y = a[key], b[key]
            if x.shape != y.shape or x.dtype != y.dtype:
                rows.append(f"{key} {tuple(y.shape)} {y.dtype} -> {tuple(x.shape)} {x.dtype}")
            elif not torch.equal(x, y):
                d = (x.double() - y.double()).abs()
                rows.append(f"{key}: {int((d > 0).sum())} of {d.numel()} elements, "
                            f"max |diff| {d.max().item():.3g}")
        if rows:
            return f"{len(rows)} tensors differ: " + "; ".join(rows[:5])
    if zipfile.is_zipfile(new) and zipfile.is_zipfile(old):
        with zipfile.ZipFile(new) as za, zipfile.ZipFile(old) as zb:
            names = sorted(set(za.namelist()) | set(zb.namelist()))
            changed = [n for n in names if n not in za.namelist() or n not in zb.namelist()
                       or za.read(n) != zb.read(n)]
        return f"{len(changed)} zip records differ: {changed[:8]}"
    x, y = new.read_bytes(), old.read_bytes()
    at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    return f"{len(x):,} vs {len(y):,} bytes, first difference at byte {at:,}"


# ------------------------------------------------------------ the folder as a whole


def test_every_generated_file_matches_the_manifest():
    on_disk = generated_files(SAMPLES)
    assert on_disk == sorted(MANIFEST["sha256"])
    for name, digest in MANIFEST["sha256"].items():
        assert hashlib.sha256(sample(name).read_bytes()).hexdigest() == digest, name


def test_folder_stays_under_20_mib():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 20 * 1024 * 1024, f"sample_checkpoints/ is {total / 2**20:.2f} MiB"


def test_readme_describes_every_sample():
    readme = sample("README.md").read_text()
    top_level = {name.split("/")[0] + ("/" if "/" in name else "") for name in MANIFEST["sha256"]}
    missing = [name for name in sorted(top_level) if f"`{name}`" not in readme]
    assert not missing, f"README.md does not mention {missing}"


@pytest.mark.slow
def test_regenerating_gives_byte_identical_files(tmp_path):
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__}
    recorded = MANIFEST["generated_with"]
    if versions != recorded:
        pytest.skip(f"byte-identity needs the recorded versions {recorded}, have {versions}")
    out = tmp_path / "out"
    markers = tmp_path / "markers"
    markers.mkdir()
    # torch.compile (the _orig_mod. sample) makes its cache folder even when nothing compiles
    env = dict(os.environ, PTTUI_SAMPLE_MARKER_DIR=str(markers), PYTHONDONTWRITEBYTECODE="1",
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    env.pop("PYTHONHASHSEED", None)
    result = subprocess.run([sys.executable, str(GENERATOR), str(out)], env=env,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr
    assert generated_files(out) == generated_files(SAMPLES)
    differing = [name for name in generated_files(SAMPLES)
                 if (out / name).read_bytes() != sample(name).read_bytes()]
    assert not differing, "regenerated files differ:\n" + "\n".join(
        f"  {name}: {how_they_differ(out / name, sample(name))}" for name in differing)
    assert json.loads((out / "MANIFEST.json").read_text()) == MANIFEST


# ---------------------------------------------------------------------- squeezenet


def test_clean_squeezenet_loads_strictly(squeezenet_reference):
    model = torchvision.models.squeezenet1_1(weights=None)
    result = model.load_state_dict(squeezenet_reference, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert squeezenet_reference["classifier.1.weight"].shape == (1000, 512, 1, 1)


def test_dataparallel_keys_have_module_prefix(squeezenet_reference):
    sd = load("squeezenet1_1_dataparallel.pt")
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "module.features.0.weight"'):
        torchvision.models.squeezenet1_1(weights=None).load_state_dict(sd)
    assert_same_tensors(strip_prefix(sd, "module."), squeezenet_reference)


def test_compiled_keys_have_orig_mod_prefix(squeezenet_reference):
    sd = load("squeezenet1_1_compiled.pt")
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "_orig_mod.features.0.weight"'):
        torchvision.models.squeezenet1_1(weights=None).load_state_dict(sd)
    assert_same_tensors(strip_prefix(sd, "_orig_mod."), squeezenet_reference)


def test_finetuned_head_has_10_classes(squeezenet_reference):
    sd = load("squeezenet1_1_finetuned_10cls.pt")
    assert sd["classifier.1.weight"].shape == (10, 512, 1, 1)
    assert sd["classifier.1.bias"].shape == (10,)
    with pytest.raises(RuntimeError, match="size mismatch for classifier.1.weight"):
        torchvision.models.squeezenet1_1(weights=None).load_state_dict(sd)
    torchvision.models.squeezenet1_1(weights=None, num_classes=10).load_state_dict(sd, strict=True)
    # a fine-tune of the same backbone: only the head differs from the clean file
    assert set(sd) == set(squeezenet_reference)
    for key in sd:
        if not key.startswith("classifier."):
            assert torch.equal(sd[key], squeezenet_reference[key]), key


# ------------------------------------------------------------------------ tiny_vit


def test_reference_loads_strictly_into_tiny_vit(vit_reference):
    tiny_vit().load_state_dict(vit_reference, strict=True)


def test_lightning_checkpoint(vit_reference):
    ckpt = load("tiny_vit_lightning.ckpt")  # weights_only=True: only plain types
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 1200
    assert ckpt["pytorch-lightning_version"] == "2.4.0"
    assert ckpt["hyper_parameters"]["num_classes"] == 10
    assert ckpt["hyper_parameters"]["lr"] == 0.001
    assert ckpt["callbacks"] == {}
    # one real Adam step: weights moved away from the initial ones
    weights = strip_prefix(ckpt["state_dict"], "model.")
    tiny_vit().load_state_dict(weights, strict=True)
    assert not torch.equal(weights["conv_proj.weight"], vit_reference["conv_proj.weight"])
    (adam,) = ckpt["optimizer_states"]
    assert len(adam["state"]) == len(vit_reference)
    assert {"step", "exp_avg", "exp_avg_sq"} <= set(adam["state"][0])
    assert float(adam["state"][0]["step"]) == 1.0
    (sched,) = ckpt["lr_schedulers"]
    assert sched["step_size"] == 30 and sched["last_epoch"] == 3


def test_renamed_keys_map_back_to_tiny_vit(vit_reference):
    sd = load("tiny_vit_renamed.pt")
    assert not any(k.startswith("encoder.layers.") for k in sd)
    assert "encoder.blocks.0.ln_1.gamma" in sd and "encoder.ln.beta" in sd
    assert not any(k.endswith(".weight") and ".ln" in k for k in sd)
    with pytest.raises(RuntimeError, match="Missing key"):
        tiny_vit().load_state_dict(sd)

    def old_to_new(key: str) -> str:
        key = re.sub(r"^encoder\.blocks\.(\d+)\.", r"encoder.layers.encoder_layer_\1.", key)
        return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))

    assert_same_tensors({old_to_new(k): v for k, v in sd.items()}, vit_reference)


def test_cuda_sample_needs_map_location(vit_reference):
    locations = []

    def record(storage, location):
        locations.append(location)
        return storage

    sd = torch.load(sample("tiny_vit_cuda.pt"), map_location=record, weights_only=True)
    assert locations and set(locations) == {"cuda:0"}
    assert_same_tensors(sd, vit_reference)
    assert_same_tensors(torch.load(sample("tiny_vit_cuda.pt"), map_location="cpu"), vit_reference)
    if torch.cuda.is_available():
        loaded = torch.load(sample("tiny_vit_cuda.pt"))
        assert loaded["class_token"].device.type == "cuda"
    else:
        for weights_only in (True, False):
            with pytest.raises(RuntimeError, match=CUDA_MESSAGE):
                torch.load(sample("tiny_vit_cuda.pt"), weights_only=weights_only)


def test_training_state_is_refused_by_weights_only(vit_reference):
    with pytest.raises(Exception, match="GLOBAL argparse.Namespace") as refused:
        load("tiny_vit_training_state.pt")
    assert isinstance(refused.value, pickle.UnpicklingError)
    with torch.serialization.safe_globals([argparse.Namespace]):
        with pytest.raises(Exception, match="GLOBAL numpy"):
            load("tiny_vit_training_state.pt")

    ckpt = torch.load(sample("tiny_vit_training_state.pt"), weights_only=False)
    assert ckpt["args"] == argparse.Namespace(lr=0.1, epochs=90, arch="tiny_vit")
    assert type(ckpt["best_acc1"]) is np.float64 and ckpt["best_acc1"] == 0.913
    assert ckpt["epoch"] == 12
    tiny_vit().load_state_dict(ckpt["model"], strict=True)
    tiny_vit().load_state_dict(ckpt["model_ema"], strict=True)
    # EMA: close to the model, but not equal
    diff = max((ckpt["model"][k] - ckpt["model_ema"][k]).abs().max().item() for k in vit_reference)
    assert 0 < diff < 0.01
    momentum = ckpt["optimizer"]["state"][0]["momentum_buffer"]
    assert momentum.shape == vit_reference["class_token"].shape
    assert ckpt["optimizer"]["param_groups"][0]["momentum"] == 0.9


def test_truncated_file_fails_to_load():
    data = sample("truncated.pt").read_bytes()
    assert data.startswith(b"PK\x03\x04")  # starts like a torch zip ...
    assert not zipfile.is_zipfile(sample("truncated.pt"))  # ... but has no central directory
    with pytest.raises((RuntimeError, OSError, ValueError)):
        torch.load(sample("truncated.pt"), weights_only=True)
    with pytest.raises((RuntimeError, OSError, ValueError)):
        torch.load(sample("truncated.pt"), weights_only=False)


def test_legacy_format_loads(vit_reference):
    data = sample("tiny_vit_legacy.pt").read_bytes()
    assert not zipfile.is_zipfile(sample("tiny_vit_legacy.pt"))
    assert data.startswith(b"\x80\x02")  # a bare pickle stream (protocol 2), not a zip
    assert_same_tensors(load("tiny_vit_legacy.pt"), vit_reference)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_archive(vit_reference):
    with pytest.warns(UserWarning, match="looks like a TorchScript archive"):
        with pytest.raises(RuntimeError, match="TorchScript archives"):
            load("tiny_vit_torchscript.pt")
    scripted = torch.jit.load(str(sample("tiny_vit_torchscript.pt")), map_location="cpu")
    assert_same_tensors(dict(scripted.state_dict()), vit_reference)
    assert scripted(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    names = zipfile.ZipFile(sample("tiny_vit_torchscript.pt")).namelist()
    assert any("/code/__torch__/" in n for n in names)


def test_safetensors_file(vit_reference):
    with safetensors.safe_open(sample("tiny_vit.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert set(vit_reference) == set(tiny_vit().state_dict())


@pytest.mark.parametrize("folder, index_name, read_shard", [
    ("tiny_vit_sharded", "model.safetensors.index.json", safetensors.torch.load_file),
    ("tiny_vit_sharded_bin", "pytorch_model.bin.index.json",
     lambda p: torch.load(p, map_location="cpu", weights_only=True)),
])
def test_sharded_index_covers_all_keys(vit_reference, folder, index_name, read_shard):
    index = json.loads(sample(f"{folder}/{index_name}").read_text())
    weight_map = index["weight_map"]
    assert set(weight_map) == set(vit_reference)
    shard_names = sorted(set(weight_map.values()))
    assert len(shard_names) == 2
    merged = {}
    for name in shard_names:
        shard = read_shard(sample(f"{folder}/{name}"))
        assert set(shard) == {k for k, v in weight_map.items() if v == name}
        assert len(shard) < len(vit_reference)
        merged.update(shard)
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in merged.values())
    tiny_vit().load_state_dict(merged, strict=True)
    for key, value in vit_reference.items():
        assert torch.equal(merged[key], value), key


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_dcp_folder(vit_reference):
    folder = sample("tiny_vit_dcp")
    assert (folder / ".metadata").is_file()
    assert list(folder.glob("*.distcp"))
    with pytest.raises(IsADirectoryError):
        torch.load(folder, weights_only=True)
    target = {k: torch.zeros_like(v) for k, v in vit_reference.items()}
    dcp.load(target, checkpoint_id=folder, no_dist=True)
    for key, value in vit_reference.items():
        assert torch.equal(target[key], value), key


def test_optimizer_only_has_no_weights(vit_reference):
    sd = load("tiny_vit_optimizer_only.pt")
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == list(range(len(vit_reference)))
    assert {"exp_avg", "exp_avg_sq"} <= set(sd["state"][0])
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "state", "param_groups"'):
        tiny_vit().load_state_dict(sd)


# ------------------------------------------------------------ code that runs on load


MALICIOUS_LOAD = """
    import torch
    try:
        ckpt = torch.load({path!r}, weights_only={weights_only})
    except Exception as e:
        print("REFUSED", type(e).__name__, " ".join(str(e).split()))
    else:
        print("LOADED", len(ckpt["state_dict"]))
"""


@pytest.mark.parametrize("weights_only", [True, False])
def test_malicious_sample_runs_code_only_on_full_load(tmp_path, weights_only):
    markers = tmp_path / "markers"
    markers.mkdir()
    code = MALICIOUS_LOAD.format(weights_only=weights_only, path=str(sample("malicious.pt")))
    result = run_python(code, markers, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ran = (markers / "pttui_malicious_ran").exists()
    if weights_only:
        assert result.stdout.startswith("REFUSED UnpicklingError"), result.stdout
        assert "GLOBAL exec" in result.stdout
        assert not ran
    else:  # the positive control: the payload really runs
        assert result.stdout.strip() == "LOADED 32", result.stdout
        assert ran
        assert os.listdir(markers) == ["pttui_malicious_ran"]


def test_whole_model_needs_models_py(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    path = str(sample("tinynet_whole_model.pt"))
    with pytest.raises(Exception, match="GLOBAL models.TinyNet"):
        torch.load(path, weights_only=True)

    # A full load outside the training repo: the class's module is missing.
    result = run_python(f"""
        import torch
        try:
            torch.load({path!r}, weights_only=False)
        except ModuleNotFoundError as e:
            print("MISSING", e.name)
    """, markers, cwd=tmp_path)
    assert result.stdout.strip() == "MISSING models", result.stdout + result.stderr
    assert not (markers / "pttui_models_imported").exists()

    # With models.py importable it loads, and importing it leaves the marker.
    result = run_python(f"""
        import sys, torch
        sys.path.insert(0, {str(SAMPLES)!r})
        model = torch.load({path!r}, weights_only=False)
        print(type(model).__module__, type(model).__name__, tuple(model(torch.zeros(2, 3, 32, 32)).shape))
    """, markers, cwd=tmp_path)
    assert result.stdout.strip() == "models TinyNet (2, 10)", result.stdout + result.stderr
    assert (markers / "pttui_models_imported").exists()


def test_targets_module_leaves_no_marker(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    result = run_python(f"""
        import sys
        sys.path.insert(0, {str(SAMPLES)!r})
        import targets
        print(sum(p.numel() for p in targets.tiny_vit().parameters()))
    """, markers, cwd=tmp_path)
    assert result.stdout.strip() == "24234", result.stdout + result.stderr
    assert os.listdir(markers) == []
