"""diff(): keys, shapes, dtypes from metadata; values one tensor at a time."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from pttui.core.compare.twofiles import DiffReport, diff, max_abs_diff
from pttui.core.read.reader import open_checkpoint

from tests.helpers import SAMPLES, run_cli

VIT = SAMPLES / "tiny_vit.safetensors"


def test_sample_against_itself_is_identical():
    a = open_checkpoint(str(VIT))
    rep = diff(a, open_checkpoint(str(VIT)), values=True)
    assert rep.same and rep.common == 32 and rep.compared == 32 and rep.identical == 32
    res = run_cli("diff", str(VIT), str(VIT), "--values")
    assert res.returncode == 0, res.stderr
    assert "identical in keys, shapes, dtypes and values" in res.stdout


def test_same_weights_in_other_formats_are_identical():
    for other in ("tiny_vit_legacy.pt", "tiny_vit_cuda.pt", "tiny_vit_dcp",
                  "tiny_vit_sharded/model.safetensors.index.json"):
        res = run_cli("diff", str(VIT), str(SAMPLES / other), "--values", "--json")
        assert res.returncode == 0, (other, res.stdout, res.stderr)
        assert json.loads(res.stdout)["values"]["identical"] == 32


def test_renamed_sample_differs():
    res = run_cli("diff", str(VIT), str(SAMPLES / "tiny_vit_renamed.pt"), "--json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["same"] is False and doc["values"] is None
    assert "encoder.layers.encoder_layer_0.ln_1.weight" in doc["only_in_a"]
    assert "encoder.blocks.0.ln_1.gamma" in doc["only_in_b"]
    assert doc["common"] + len(doc["only_in_a"]) == 32
    human = run_cli("diff", str(VIT), str(SAMPLES / "tiny_vit_renamed.pt"), "--limit", "2")
    assert human.returncode == 1
    assert "only in A (26):" in human.stdout and "more lines (--limit 0 lists all)" in human.stdout
    assert "  encoder.blocks.{0,1}.ln_1.{gamma,beta}" in human.stdout
    assert "result: the checkpoints differ" in human.stdout


def test_shape_difference():
    a = open_checkpoint(str(SAMPLES / "squeezenet1_1.pt"))
    b = open_checkpoint(str(SAMPLES / "squeezenet1_1_finetuned_10cls.pt"))
    rep = diff(a, b, values=True)
    assert [k for k, _, _ in rep.shape_diff] == ["classifier.1.weight", "classifier.1.bias"]
    assert rep.shape_diff[0][1:] == ((1000, 512, 1, 1), (10, 512, 1, 1))
    assert rep.compared == 50 and rep.identical == 50 and not rep.same


def test_values_report_the_max_abs_difference(tmp_path):
    ref = load_file(VIT)
    changed = dict(ref)
    w = ref["conv_proj.weight"].clone()
    w.view(-1)[17] += 0.25
    changed["conv_proj.weight"] = w
    changed["heads.head.bias"] = ref["heads.head.bias"] - 1.5
    save_file(changed, tmp_path / "b.safetensors")
    res = run_cli("diff", str(VIT), str(tmp_path / "b.safetensors"), "--values", "--json")
    assert res.returncode == 1
    vals = json.loads(res.stdout)["values"]
    assert vals["compared"] == 32 and vals["identical"] == 30
    assert vals["max_abs_diff"]["heads.head.bias"] == pytest.approx(1.5)
    assert vals["max_abs_diff"]["conv_proj.weight"] == pytest.approx(0.25, abs=1e-6)
    human = run_cli("diff", str(VIT), str(tmp_path / "b.safetensors"), "--values")
    lines = human.stdout.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("values differ")))
    assert lines[first + 1].strip().startswith("heads.head.bias  1.5")


def test_values_without_values_flag_are_not_compared(tmp_path):
    save_file({k: v + 1 for k, v in load_file(VIT).items()}, tmp_path / "b.safetensors")
    assert run_cli("diff", str(VIT), str(tmp_path / "b.safetensors")).returncode == 0
    assert run_cli("diff", str(VIT), str(tmp_path / "b.safetensors"),
                   "--values").returncode == 1


def test_dtype_difference_still_compares_values(tmp_path):
    x = torch.randn(8)
    save_file({"x": x}, tmp_path / "a.safetensors")
    save_file({"x": x.half()}, tmp_path / "b.safetensors")
    rep = diff(open_checkpoint(str(tmp_path / "a.safetensors")),
               open_checkpoint(str(tmp_path / "b.safetensors")), values=True)
    assert rep.dtype_diff == [("x", "float32", "float16")]
    assert 0 < rep.max_abs_diff["x"] < 1e-2
    assert rep.to_json()["dtype_diff"] == [{"key": "x", "dtype_a": "float32",
                                            "dtype_b": "float16"}]


def test_nan_and_inf_handling():
    nan, inf = math.nan, math.inf
    assert max_abs_diff(torch.tensor([nan, inf, 1.0]), torch.tensor([nan, inf, 1.0])) == 0
    assert max_abs_diff(torch.tensor([nan, 1.0]), torch.tensor([0.0, 1.0])) == inf
    assert max_abs_diff(torch.tensor([1, 5]), torch.tensor([1, 2])) == 3
    assert max_abs_diff(torch.tensor([True]), torch.tensor([False])) == 1
    z = torch.tensor([1 + 1j])
    assert max_abs_diff(z, z + 3j) == pytest.approx(3)
    rep = DiffReport("a", "b", values=True, max_abs_diff={"k": inf})
    assert json.dumps(rep.to_json())  # valid JSON, no bare Infinity
    assert rep.to_json()["values"]["max_abs_diff"] == {"k": "inf"}


def test_big_tensors_compare_in_chunks(monkeypatch):
    import pttui.core.compare.twofiles as diff_mod

    monkeypatch.setattr(diff_mod, "CHUNK", 7)
    a = torch.arange(100, dtype=torch.float32).view(10, 10).t()
    b = a.clone()
    b[3, 4] += 2
    assert max_abs_diff(a, b) == 2


def test_unreadable_file_exits_2():
    res = run_cli("diff", str(VIT), str(SAMPLES / "truncated.pt"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "truncated" in res.stderr


def test_diff_names_the_container_it_compared():
    """A training checkpoint holds several; diff says which one it took, and how to pick."""
    state = SAMPLES / "tiny_vit_training_state.pt"
    res = run_cli("diff", str(state), str(VIT))
    first, second = res.stdout.splitlines()[:2]
    assert "container model, one of 3: --select-a picks another" in first
    assert "container" not in second  # a single-container file says nothing
    res = run_cli("diff", str(state), str(VIT), "--select-a", "model_ema")
    assert "container model_ema, one of 3" in res.stdout.splitlines()[0]
