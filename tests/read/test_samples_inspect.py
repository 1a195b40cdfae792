"""For every shipped sample, ``pttui inspect`` reports what torch.load gives for the
selected container: same keys, shapes and dtypes, and the stored device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint

from tests.helpers import SAMPLES, inspect_json, reader_facts

# sample -> (how torch must load it, the container pttui should select)
CASES = {
    "squeezenet1_1.pt": ("load", []),
    "squeezenet1_1_dataparallel.pt": ("load", []),
    "squeezenet1_1_compiled.pt": ("load", []),
    "squeezenet1_1_finetuned_10cls.pt": ("load", []),
    "tiny_vit_lightning.ckpt": ("load", ["state_dict"]),
    "tiny_vit_renamed.pt": ("load", []),
    "tinynet_whole_model.pt": ("unsafe", []),
    "tiny_vit_cuda.pt": ("load", []),
    "tiny_vit_training_state.pt": ("unsafe", ["model"]),
    "tiny_vit_legacy.pt": ("load", []),
    "tiny_vit_torchscript.pt": ("jit", []),
    "tiny_vit.safetensors": ("safetensors", []),
    "tiny_vit_sharded/model.safetensors.index.json": ("sharded", []),
    "tiny_vit_sharded_bin/pytorch_model.bin.index.json": ("sharded", []),
    "tiny_vit_optimizer_only.pt": ("load", ["state"]),
    "tiny_vit_dcp": ("dcp", []),
    # malicious.pt is never loaded, not even here: it holds tiny_vit.safetensors' weights
    "malicious.pt": ("same_as:tiny_vit.safetensors", ["state_dict"]),
}

# Runs in a child: loads every sample the way torch users do and prints its facts.
# Unsafe loads happen only here, for our own samples, in a throwaway process.
_LOADER = r"""
import json, os, sys, torch
from safetensors.torch import load_file
root, cases = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, root)

def facts(sd, prefix=""):
    out = {}
    for k, v in sd.items():
        if isinstance(v, dict):
            out.update(facts(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + str(k)] = [list(v.shape), str(v.dtype)[6:]]
    return out

result = {}
for name, (how, sel) in cases.items():
    path = os.path.join(root, name)
    if how == "jit":
        obj = torch.jit.load(path, map_location="cpu").state_dict()
    elif how == "safetensors":
        obj = load_file(path)
    elif how.startswith("same_as:"):
        obj = load_file(os.path.join(root, how.split(":", 1)[1]))
        sel = []
    elif how == "dcp":
        import tempfile
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "dcp.pt")
            dcp_to_torch_save(path, out)
            obj = torch.load(out, weights_only=True)
    elif how == "sharded":
        wm = json.load(open(path))["weight_map"]
        obj = {}
        for shard in sorted(set(wm.values())):
            sp = os.path.join(os.path.dirname(path), shard)
            obj.update(load_file(sp) if sp.endswith(".safetensors")
                       else torch.load(sp, map_location="cpu"))
    else:
        obj = torch.load(path, map_location="cpu", weights_only=(how == "load"))
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
    for part in sel:
        obj = obj[part]
    result[name] = facts(obj)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def torch_truth(tmp_path_factory):
    markers = tmp_path_factory.mktemp("markers")
    env = {**os.environ, "PTTUI_SAMPLE_MARKER_DIR": str(markers)}
    out = subprocess.run([sys.executable, "-c", _LOADER, str(SAMPLES), json.dumps(CASES)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_matches_torch(name, torch_truth):
    ckpt = open_checkpoint(str(SAMPLES / name))
    assert list(ckpt.selected) == CASES[name][1]
    mine = {k: [shape, dt] for k, (shape, dt) in reader_facts(ckpt.tensors).items()}
    assert mine == torch_truth[name]


def test_stored_devices():
    assert open_checkpoint(str(SAMPLES / "tiny_vit_cuda.pt")).devices == ["cuda:0"]
    assert open_checkpoint(str(SAMPLES / "squeezenet1_1.pt")).devices == ["cpu"]


def test_globals_of_the_risky_samples(tmp_path):
    env = {"PTTUI_SAMPLE_MARKER_DIR": str(tmp_path)}
    mal = inspect_json(SAMPLES / "malicious.pt", env=env)
    assert mal["globals"]["dangerous"] == ["builtins.exec"]
    whole = inspect_json(SAMPLES / "tinynet_whole_model.pt", env=env)
    # a whole-model pickle needs the classes' code (models.TinyNet, torch.nn's modules):
    # nothing pttui can vouch for when a file calls it, so nothing offered for allow-listing
    assert "models.TinyNet" in whole["globals"]["dangerous"] and not whole["globals"]["blocked"]
    assert "torch.nn.modules.conv.Conv2d" in whole["globals"]["dangerous"]
    train = inspect_json(SAMPLES / "tiny_vit_training_state.pt", env=env)
    assert "argparse.Namespace" in train["globals"]["blocked"]
    # numpy.float64 -> numpy.dtype('f8'): torch needs its class allow-listed as well
    assert "numpy.dtypes.Float64DType" in train["globals"]["blocked"]
    assert len(train["globals"]["blocked"]) == 4
    assert train["other"]["epoch"] == 12 and train["other"]["best_acc1"] == pytest.approx(0.913)
    assert [c["path"] for c in train["containers"]] == [["model"], ["model_ema"],
                                                         ["optimizer", "state"]]
    clean = inspect_json(SAMPLES / "squeezenet1_1.pt", env=env)
    assert clean["globals"]["blocked"] == [] and clean["globals"]["dangerous"] == []
    # nothing ran, nothing was imported
    assert os.listdir(tmp_path) == []


def test_malicious_weights_are_still_listed():
    ckpt = open_checkpoint(str(SAMPLES / "malicious.pt"))
    assert len(ckpt.tensors) == 32 and "heads.head.weight" in ckpt.tensors


def test_every_file_in_the_folder_is_read_or_refused_clearly():
    from pttui.core.read.folder import list_folder

    entries = {e.name: e for e in list_folder(str(SAMPLES))}
    assert entries["truncated.pt"].marks == ["unreadable"]
    assert "truncated" in entries["truncated.pt"].message
    assert "cuda-saved" in entries["tiny_vit_cuda.pt"].marks
    assert "unsafe-globals" in entries["malicious.pt"].marks
    assert "needs-allowlist" in entries["tiny_vit_training_state.pt"].marks
    assert entries["tiny_vit_dcp/"].format == "dcp" and entries["tiny_vit_dcp/"].tensors == 32
    unreadable = [n for n, e in entries.items() if "unreadable" in e.marks]
    assert unreadable == ["truncated.pt"]
    with pytest.raises(ReadError, match="truncated"):
        open_checkpoint(str(SAMPLES / "truncated.pt"))


def test_quick_folder_listing_names_the_same_files_at_once():
    """The TUI shows this first (formats by magic bytes), then the full reading."""
    from pttui.core.read.folder import list_folder

    quick = {e.name: e for e in list_folder(str(SAMPLES), examine=False)}
    full = {e.name: e for e in list_folder(str(SAMPLES))}
    assert list(quick) == list(full)
    assert all(e.tensors == 0 for e in quick.values())
    assert quick["tiny_vit.safetensors"].format == "safetensors"
    assert quick["tiny_vit_dcp/"].format == "dcp"
    assert quick["tiny_vit_legacy.pt"].format == "torch-legacy"


def test_a_listing_past_its_deadline_gives_up():
    """The TUI's first frame lists a folder only when that is quick (``deadline``)."""
    import time

    from pttui.core.read.folder import list_folder

    with pytest.raises(TimeoutError):
        list_folder(str(SAMPLES), examine=False, deadline=time.monotonic() - 1)
    in_time = list_folder(str(SAMPLES), examine=False, deadline=time.monotonic() + 60)
    assert [e.name for e in in_time] == [e.name for e in list_folder(str(SAMPLES),
                                                                     examine=False)]
