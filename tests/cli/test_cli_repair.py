"""Every sample scenario end to end through the CLI: check fails, fix writes a file that
loads into the real model, and every kept tensor is bit-identical to the source."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import SAMPLES, run_cli, run_main

SQUEEZE = "torchvision:squeezenet1_1"
TINY = f"{SAMPLES}/targets.py:tiny_vit"

# sample, model spec, check's exit code, the accepted-missing keys fix must leave
SCENARIOS = [
    ("squeezenet1_1.pt", SQUEEZE, 0, []),
    ("squeezenet1_1_dataparallel.pt", SQUEEZE, 1, []),
    ("squeezenet1_1_compiled.pt", SQUEEZE, 1, []),
    ("squeezenet1_1_finetuned_10cls.pt", SQUEEZE, 1, ["classifier.1.weight", "classifier.1.bias"]),
    ("tiny_vit_lightning.ckpt", TINY, 1, []),
    ("tiny_vit_renamed.pt", TINY, 1, []),
    ("tiny_vit_cuda.pt", TINY, 0, []),
    ("tiny_vit_training_state.pt", TINY, 0, []),
    ("malicious.pt", TINY, 0, []),
    ("tiny_vit_legacy.pt", TINY, 0, []),
    ("tiny_vit.safetensors", TINY, 0, []),
    ("tiny_vit_sharded/model.safetensors.index.json", TINY, 0, []),
    ("tiny_vit_sharded_bin/pytorch_model.bin.index.json", TINY, 0, []),
    ("tiny_vit_torchscript.pt", TINY, 0, []),
    ("tiny_vit_qkv_split.pt", TINY, 1, []),  # q/k/v joined back: tiny_vit's weights exactly
]


def _model(spec):
    import importlib.util

    import torchvision

    if spec == SQUEEZE:
        return torchvision.models.squeezenet1_1(weights=None)
    mod_spec = importlib.util.spec_from_file_location("sample_targets", SAMPLES / "targets.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.tiny_vit()


def _reference_weights(name):
    """The weights each sample holds (see sample_checkpoints/README.md)."""
    if name.startswith("squeezenet1_1"):
        ref = torch.load(SAMPLES / "squeezenet1_1.pt", weights_only=True)
        if "finetuned" in name:
            ref = {k: v for k, v in ref.items() if not k.startswith("classifier.1.")}
        return ref
    if name in ("tiny_vit_lightning.ckpt", "tiny_vit_training_state.pt"):
        return None  # one optimizer step away from the others
    return load_file(str(SAMPLES / "tiny_vit.safetensors"))


# the renaming scenarios also go to .safetensors
CASES = [(*s, ".pt") for s in SCENARIOS] + [
    (*s, ".safetensors") for s in SCENARIOS
    if s[0] in ("squeezenet1_1_dataparallel.pt", "tiny_vit_renamed.pt",
                "squeezenet1_1_finetuned_10cls.pt", "tiny_vit_qkv_split.pt")]


@pytest.mark.parametrize("name, spec, check_rc, accepted, ext", CASES,
                         ids=[f"{c[0]}->{c[4]}" for c in CASES])
def test_check_then_fix(tmp_path, capsys, monkeypatch, name, spec, check_rc, accepted, ext):
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    rc, out, err = run_main(capsys, "check", str(SAMPLES / name), "--model", spec, "--json")
    assert rc == check_rc, err
    doc = json.loads(out)
    assert doc["strict_ok"] is (check_rc == 0)
    if check_rc:
        assert doc["suggestions"], "a failing check offers at least one step"

    out = tmp_path / f"fixed{ext}"
    rc, stdout, err = run_main(capsys, "fix", str(SAMPLES / name), "--model", spec, "--auto",
                               "-o", str(out), "--json")
    assert rc == 0, err + stdout
    doc = json.loads(stdout)
    assert doc["verified"] is True
    recipe = json.loads((tmp_path / f"fixed{ext}.recipe.json").read_text())
    got_accepted = [k for op in recipe["ops"] if op["op"] == "accept_missing" for k in op["keys"]]
    assert sorted(got_accepted) == sorted(accepted)

    sd = load_file(str(out)) if ext == ".safetensors" else torch.load(out, weights_only=True)
    model = _model(spec)
    result = model.load_state_dict(sd, strict=not accepted)
    if accepted:
        assert sorted(result.missing_keys) == sorted(accepted) and not result.unexpected_keys
    ref = _reference_weights(name)
    if ref is not None:
        assert set(sd) == set(ref)
        for k, v in ref.items():
            assert torch.equal(sd[k], v), k
    assert "pttui_models_imported" not in os.listdir(tmp_path)
    assert "pttui_malicious_ran" not in os.listdir(tmp_path)


def test_fix_keeps_batchnorm_metadata(tmp_path, capsys):
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=4)
    src = tmp_path / "dp.pt"
    torch.save(torch.nn.DataParallel(model).state_dict(), src)
    out = tmp_path / "fixed.pt"
    rc, _, err = run_main(capsys, "fix", str(src), "--model", "torchvision:resnet18",
                          "--model-arg", "num_classes=4", "--auto", "-o", str(out))
    assert rc == 0, err
    sd = torch.load(out, weights_only=True)
    assert sd._metadata["bn1"] == {"version": 2}
    assert sd._metadata["layer1.0.bn1"] == {"version": 2}
    model.load_state_dict(sd)


def test_wrong_variant_is_refused(tmp_path, capsys):
    import torchvision

    src = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), src)
    rc, out, _ = run_main(capsys, "check", str(src), "--model", "torchvision:resnet18", "--json")
    assert rc == 1
    assert any("variant" in d for d in json.loads(out)["diagnosis"])
    res = run_cli("fix", str(src), "--model", "torchvision:resnet18", "--auto", "-o",
                  str(tmp_path / "out.pt"))
    assert res.returncode == 1
    assert "different variant" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "out.pt").exists()


def test_optimizer_state_is_refused(tmp_path, capsys):
    rc, _, err = run_main(capsys, "fix", str(SAMPLES / "tiny_vit_optimizer_only.pt"),
                          "--model", TINY, "--auto", "-o", str(tmp_path / "out.pt"))
    assert rc == 1 and "uninitialised" in err
    assert not (tmp_path / "out.pt").exists()


def test_recipe_replay_and_renderings(tmp_path, capsys):
    out1, out2 = tmp_path / "a.pt", tmp_path / "b.pt"
    src = str(SAMPLES / "tiny_vit_renamed.pt")
    assert run_main(capsys, "fix", src, "--model", TINY, "--auto", "-o", str(out1))[0] == 0
    recipe = str(out1) + ".recipe.json"
    rc, _, err = run_main(capsys, "fix", src, "--model", TINY, "--recipe", recipe, "-o",
                          str(out2), "--recipe-out", str(tmp_path / "again.json"))
    assert rc == 0, err
    a, b = torch.load(out1, weights_only=True), torch.load(out2, weights_only=True)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    for style in ("text", "json", "mmengine", "hf", "python"):
        res = run_cli("recipe", "show", recipe, "--as", style)
        assert res.returncode == 0 and res.stdout.strip(), style
    assert "revise_keys" in run_cli("recipe", "show", recipe, "--as", "mmengine").stdout


def test_fix_refuses_to_overwrite(tmp_path, capsys):
    src = SAMPLES / "squeezenet1_1_dataparallel.pt"
    before = src.read_bytes()
    rc, _, err = run_main(capsys, "fix", str(src), "--model", SQUEEZE, "--auto", "-o", str(src))
    assert rc == 2 and err.count("\n") == 1
    assert src.read_bytes() == before
    out = tmp_path / "o.pt"
    out.write_bytes(b"mine")
    rc, _, err = run_main(capsys, "fix", str(src), "--model", SQUEEZE, "--auto", "-o", str(out))
    assert rc == 2 and "--force" in err
    assert out.read_bytes() == b"mine"


@pytest.mark.parametrize("argv, needle", [
    (["check", "x.pt"], "--model"),
    (["check", str(SAMPLES / "squeezenet1_1.pt"), "--model", "torchvision:resnet1"], "resnet1"),
    (["check", str(SAMPLES / "squeezenet1_1.pt"), "--model", "nosuchpkg.mod:f"], "nosuchpkg"),
    (["check", str(SAMPLES / "squeezenet1_1.pt"), "--model", SQUEEZE, "--model-arg", "oops"],
     "oops"),
    (["fix", str(SAMPLES / "squeezenet1_1.pt"), "--model", SQUEEZE, "--recipe",
      "/nonexistent.json", "-o", "/tmp/x.pt"], "nonexistent"),
])
def test_bad_inputs_get_one_line(argv, needle):
    res = run_cli(*argv)
    assert res.returncode == 2, res.stdout
    assert res.stderr.count("\n") == 1 and needle in res.stderr and "Traceback" not in res.stderr


def test_export_is_an_ordinary_file(tmp_path, capsys):
    """The output gets the usual permissions (umask), not a temp file's 0600."""
    out = tmp_path / "fixed.pt"
    old = os.umask(0o022)
    try:
        rc, _, err = run_main(capsys, "fix", str(SAMPLES / "squeezenet1_1_dataparallel.pt"),
                              "--model", SQUEEZE, "--auto", "-o", str(out))
    finally:
        os.umask(old)
    assert rc == 0, err
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in os.listdir(tmp_path) if "pttui-partial" in p]


def test_the_printed_replay_repeats_the_fix_as_pasted(tmp_path, capsys, monkeypatch):
    """`fix --recipe` with a model argument prints a replay that, run from the same
    folder, writes the same tensors again."""
    import shlex

    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", tmp_path / "ft.pt")
    (tmp_path / "out").mkdir()
    recipe = {"pttui_recipe": 1, "source": None, "target": None, "model_args": {},
              "ops": []}  # with num_classes=10 the file fits as it is
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    rc, out, err = run_main(capsys, "fix", "ft.pt", "--model", "torchvision:squeezenet1_1",
                            "--model-arg", "num_classes=10", "--recipe", "r.json",
                            "-o", "out/a.safetensors")
    assert rc == 0, err
    replay = next(line.split("replay: ", 1)[1] for line in out.splitlines() if "replay: " in line)
    words = shlex.split(replay)
    assert words[:2] == ["pttui", "fix"] and "num_classes=10" in words
    assert "out/a.safetensors.recipe.json" in words
    rc, out2, err2 = run_main(capsys, *words[1:])
    assert rc == 0, err2
    again = words[words.index("-o") + 1]
    assert again != "out/a.safetensors" and again.startswith("out/")
    a, b = load_file("out/a.safetensors"), load_file(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- check: what torch.load itself would refuse, though the keys fit ----------------------

LOAD_NOTES = [
    ("malicious.pt", ["the pickle needs builtins.exec", "no allow-list makes it safe",
                      "`pttui fix` exports its tensors without running anything"]),
    ("tiny_vit_training_state.pt", ["torch.load(weights_only=True) refuses this file",
                                    "argparse.Namespace", "`pttui load --allow"]),
    ("tiny_vit_cuda.pt", ["saved from cuda:0", "map_location='cpu'"]),
    ("tiny_vit_torchscript.pt", ["TorchScript", "torch.jit.load"]),
]


@pytest.mark.parametrize("name, needles", LOAD_NOTES, ids=[n for n, _ in LOAD_NOTES])
def test_check_notes_what_torch_load_would_refuse(tmp_path, capsys, monkeypatch, name, needles):
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine
    src = tmp_path / name
    shutil.copy(SAMPLES / name, src)
    rc, out, err = run_main(capsys, "check", str(src), "--model", TINY)
    assert rc == 0, err  # the keys fit: strict load_state_dict would succeed
    assert "strict load: OK" in out
    notes = [line.strip() for line in out.splitlines() if line.strip().startswith("note: ")]
    assert len(notes) == 1, out
    for needle in needles:
        assert needle in notes[0], (needle, notes[0])

    rc, out, err = run_main(capsys, "check", str(src), "--model", TINY, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["strict_ok"] is True
    assert len(doc["notes"]) == 1 and all(n in doc["notes"][0] for n in needles)
    assert "pttui_malicious_ran" not in os.listdir(tmp_path)


def test_check_notes_nothing_for_a_plain_file(tmp_path, capsys):
    shutil.copy(SAMPLES / "tiny_vit_legacy.pt", tmp_path / "legacy.pt")
    rc, out, _ = run_main(capsys, "check", str(tmp_path / "legacy.pt"), "--model", TINY)
    assert rc == 0 and "note:" not in out
    rc, out, _ = run_main(capsys, "check", str(tmp_path / "legacy.pt"), "--model", TINY, "--json")
    assert json.loads(out)["notes"] == []


def test_cuda_note_is_silent_where_cuda_is_available(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rc, out, _ = run_main(capsys, "check", str(SAMPLES / "tiny_vit_cuda.pt"), "--model", TINY,
                          "--json")
    assert rc == 0 and json.loads(out)["notes"] == []


def test_check_steps_header_does_not_read_as_the_whole_plan(capsys):
    rc, out, _ = run_main(capsys, "check", str(SAMPLES / "squeezenet1_1_dataparallel.pt"),
                          "--model", SQUEEZE)
    assert rc == 1
    assert "next steps, each measured on the file as it is now" in out
    assert "`pttui fix --auto --dry-run` shows the whole plan" in out
    assert "applies the safe ones" not in out
