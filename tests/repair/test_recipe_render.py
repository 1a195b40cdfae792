"""Recipe renderings: the Python snippet runs against real torch; mmengine revise_keys and
transformers key_mapping, run with those libraries' own rules, rename like the recipe."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttui.core.recipe.op import RecipeConflict
from pttui.core.recipe.recipe import (AcceptMissing, AddPrefix, Cast, Drop, KeyMap, Recipe,
                                      RegexRename, SelectContainer, StripPrefix)
from pttui.core.repair.autofix import auto_fix, reopen
from pttui.core.read.reader import open_checkpoint
from pttui.core.recipe.render import to_hf, to_mmengine, to_python
from pttui.core.session.export import export_session
from pttui.core.target import load_target
from tests.helpers import ROOT, SAMPLES
from tests.repair.test_recipe import metas, rename_ops, sd

torch = pytest.importorskip("torch")
nn = torch.nn


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _run(code: str, model: nn.Module) -> dict:
    compile(code, "<snippet>", "exec")
    namespace = {"model": model}
    exec(code, namespace)  # noqa: S102 - the point of the test
    return namespace


def _assert_holds(model: nn.Module, expected: dict) -> None:
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_python_snippet_strips_prefix_drops_and_loads(tmp_path):
    src = _model()
    for m in src.modules():  # make the weights differ from a fresh model's
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.fill_(0.5)
            m.num_batches_tracked.fill_(7)
    saved = {f"module.{k}": v for k, v in src.state_dict().items()}
    saved["module.aux_head.weight"] = torch.ones(2, 2)
    path = tmp_path / "ckpt.pt"
    torch.save(saved, path)
    recipe = Recipe([StripPrefix("module."), Drop("aux_head.*")], source=str(path))
    code = to_python(recipe)
    assert code.splitlines()[2] == "import fnmatch, re, torch"
    dst = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    _run(code, dst)
    _assert_holds(dst, src.state_dict())


def test_python_snippet_with_container_renames_cast_and_accepted_missing(tmp_path):
    src = _model()
    state = src.state_dict()
    saved = {"epoch": 3, "model": {
        **{k.replace("0.", "stem.", 1): v for k, v in state.items() if k.startswith("0.")},
        **{f"1.{k[2:]}": v for k, v in state.items() if k.startswith("1.")},
        "3.w": state["3.weight"]}}
    path = tmp_path / "nested.pt"
    torch.save(saved, path)
    recipe = Recipe([SelectContainer(("model",)), RegexRename(r"^stem\.", "0."),
                     KeyMap({"3.w": "3.weight", "unused": "x"}), Cast("float16", "3.*"),
                     AcceptMissing(("3.bias",))])
    model = _model()
    nn.init.zeros_(model[3].bias)
    ns = _run(to_python(recipe, path=str(path)), model)
    expected = dict(state, **{"3.weight": state["3.weight"].half().float(),
                              "3.bias": torch.zeros(3)})
    _assert_holds(model, expected)
    assert ns["sd"]["3.weight"].dtype == torch.float16
    assert ns["sd"]["1.num_batches_tracked"].dtype == torch.int64  # not a floating tensor


def test_python_snippet_strict_load_fails_when_keys_are_left_over(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({f"module.{k}": v for k, v in _model().state_dict().items()}, path)
    with pytest.raises(RuntimeError, match="Missing key"):
        _run(to_python(Recipe([], source=str(path))), _model())
    missing = Recipe([StripPrefix("module."), Drop("3.*"), AcceptMissing(("3.weight",))],
                     source=str(path))
    with pytest.raises(AssertionError, match="3.bias"):
        _run(to_python(missing), _model())


def test_python_snippet_reads_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    src = _model()
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file({f"net.{k}": v for k, v in src.state_dict().items()}, str(path))
    dst = _model()
    for p in dst.parameters():
        nn.init.zeros_(p)
    _run(to_python(Recipe([RegexRename(r"^net\.", "")], source=str(path))), dst)
    _assert_holds(dst, src.state_dict())


# -- mmengine and transformers, with their own loading rules -------------------------

def _mmengine_keys(code: str, keys: list[str]) -> list[str]:
    """mmengine's load_checkpoint: every (pattern, replacement) in order, re.sub each."""
    ns: dict = {}
    exec(code, ns)  # noqa: S102
    for pattern, replacement in ns["revise_keys"]:
        keys = [re.sub(pattern, replacement, k) for k in keys]
    return keys


def _hf_keys(code: str, keys: list[str]) -> list[str]:
    """transformers' key_mapping: the first pattern that matches renames the key, then stop."""
    ns: dict = {}
    exec(code, ns)  # noqa: S102
    out = []
    for key in keys:
        for pattern, replacement in ns["key_mapping"].items():
            key, n = re.subn(pattern, replacement, key)
            if n:
                break
        out.append(key)
    return out


def test_mmengine_revise_keys_text():
    recipe = Recipe([SelectContainer(("state_dict",)), StripPrefix("module."),
                     Drop("head.*"), Cast("half"), AcceptMissing(("fc.bias",))],
                    source="r.pth", target="torchvision:resnet18")
    code = to_mmengine(recipe)
    assert "(r'^module\\.', ''),  # strip prefix `module.`" in code
    assert "not expressible as mmengine renames" in code
    assert "drop `head.*`" in code and "cast all floating tensors to float16" in code
    assert "`fc.bias`" in code and "strict=False" in code
    assert "container" not in code  # mmengine reads `state_dict` by itself
    assert "`r.pth`" in code.splitlines()[0]
    assert _mmengine_keys(code, ["module.a"]) == ["a"]


def test_renderings_flag_what_they_cannot_express():
    recipe = Recipe([SelectContainer(("model",)), RegexRename("a", "b", count=1)])
    for code in (to_mmengine(recipe), to_hf(recipe)):
        assert "use container `model`" in code and "replaces every match" in code
    assert "revise_keys = [\n]" in to_mmengine(recipe)


def test_mmengine_key_map_chains_and_swaps():
    op = KeyMap({"q": "k", "k": "q", "a": "b", "b": "c"})
    keys = ["q", "k", "a", "b", "z"]
    assert _mmengine_keys(to_mmengine(Recipe([op])), keys) == list(op.apply(sd(*keys)))


@settings(max_examples=200)
@given(metas(min_size=1), st.lists(rename_ops, min_size=1, max_size=4))
def test_mmengine_renames_like_the_recipe(tensors, op_list):
    recipe = Recipe(op_list)
    try:
        expected = list(recipe.apply(tensors))
    except RecipeConflict:
        return
    assert _mmengine_keys(to_mmengine(recipe), list(tensors)) == expected


@settings(max_examples=200)
@given(metas(min_size=1), rename_ops)
def test_hf_key_mapping_renames_like_a_one_step_recipe(tensors, op):
    recipe = Recipe([op, Drop("nothing")])
    try:
        expected = list(recipe.apply(tensors))
    except RecipeConflict:
        return
    code = to_hf(recipe)
    assert _hf_keys(code, list(tensors)) == expected
    assert "caution" not in code and "drop `nothing`" in code


def test_hf_warns_when_keys_need_two_steps():
    recipe = Recipe([StripPrefix("module."), AddPrefix("model.")])
    code = to_hf(recipe)
    assert "caution: 2 rename steps" in code
    assert code.rstrip().endswith("key_mapping=key_mapping)")


def test_odd_keys_render_as_valid_python(tmp_path):
    odd = ["it's", 'say "hi"', "back\\slash", "tab\there", "end\\", "nul\x00"]
    recipe = Recipe([KeyMap({k: k + ".x" for k in odd}), StripPrefix("it's"),
                     AddPrefix("a\\b", only=r"\\"), Drop(odd[0]), Cast("half", odd[1]),
                     AcceptMissing(tuple(odd))], source="we'ird\npath.pt")
    for code in (to_python(recipe), to_mmengine(recipe), to_hf(recipe)):
        compile(code, "<snippet>", "exec")
    assert _mmengine_keys(to_mmengine(recipe), odd) == list(recipe.apply(sd(*odd)))


# -- the snippet loads every sample format, and gives what `pttui fix` exports ------------

VIT_SPEC = f"{SAMPLES / 'targets.py'}:tiny_vit"


def _tiny_vit() -> nn.Module:
    spec = importlib.util.spec_from_file_location("pttui_test_targets", SAMPLES / "targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # targets.py has no side effects (models.py has)
    return mod.tiny_vit()


def _copy(tmp_path, sample: str):
    """The sample (its folder for a sharded set or DCP) copied into tmp_path."""
    top = sample.split("/", 1)[0]
    src = SAMPLES / top
    if src.is_dir():
        shutil.copytree(src, tmp_path / top)
    else:
        shutil.copy(src, tmp_path / top)
    return tmp_path / sample


def _repaired(path, cast: str | None = None):
    """`pttui fix --auto`'s recipe for the tiny ViT, and the tensors pttui exports with it."""
    ckpt = open_checkpoint(str(path))
    result = auto_fix(ckpt, load_target(VIT_SPEC))
    assert result.refused is None, result.refused
    recipe = result.recipe if cast is None else result.recipe.with_op(Cast(cast))
    out = path.parent / "pttui_export.pt"
    export_session(reopen(result.ckpt, recipe), recipe, str(out), write_recipe=False)
    return recipe, torch.load(out, weights_only=True)


def _same_tensors(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k


@pytest.mark.parametrize("sample,cast", [
    ("tiny_vit_training_state.pt", None),  # argparse.Namespace + numpy scalars: allow-list
    ("tiny_vit_sharded_bin/pytorch_model.bin.index.json", None),
    ("tiny_vit_sharded/model.safetensors.index.json", "bfloat16"),
    ("tiny_vit_dcp", None),
    ("tiny_vit.safetensors", "float16"),
    ("tiny_vit_lightning.ckpt", None),  # container `state_dict`, prefix `model.`
    ("tiny_vit_renamed.pt", None),  # gamma/beta and blocks.N renames
    ("tiny_vit_legacy.pt", None),
    ("tiny_vit_cuda.pt", None),
    ("tiny_vit_torchscript.pt", None),
])
def test_python_snippet_loads_each_format_like_the_export(tmp_path, sample, cast):
    path = _copy(tmp_path, sample)
    recipe, exported = _repaired(path, cast)
    code = to_python(recipe)
    assert f"PATH = {str(path)!r}" in code
    model = _tiny_vit()
    ns = _run(code, model)  # ends with model.load_state_dict(sd): strict
    _same_tensors(ns["sd"], dict(exported))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], exported[k].to(loaded[k].dtype)) for k in exported)


def test_python_snippet_for_a_whole_pickled_model_refuses_it(tmp_path, monkeypatch):
    """torch.save(model): only weights_only=False rebuilds it, which runs its classes' code,
    so the snippet offers no such load; it says to load pttui's export, which loads as a
    plain state_dict."""
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    path = _copy(tmp_path, "tinynet_whole_model.pt")
    ckpt = open_checkpoint(str(path))
    recipe = Recipe([SelectContainer(())], source=str(path))
    out = tmp_path / "pttui_export.pt"
    export_session(ckpt, recipe, str(out), write_recipe=False)
    code = to_python(recipe)
    assert "weights_only=False)" not in code and "safe_globals" not in code
    assert "models.TinyNet" in code and "pttui fix" in code
    with pytest.raises(RuntimeError, match="whole pickled model"):
        _run(code, nn.Linear(1, 1))
    assert not (tmp_path / "pttui_models_imported").exists()  # nothing was unpickled
    # what it points to instead: the export loads with weights_only=True
    sd = torch.load(out, weights_only=True)
    assert set(sd) == set(ckpt.tensors)


def test_python_snippet_refuses_a_file_with_code_in_its_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    path = _copy(tmp_path, "malicious.pt")
    code = to_python(Recipe([SelectContainer(("state_dict",))], source=str(path)))
    assert "builtins.exec" in code and "torch.load(" not in code
    with pytest.raises(RuntimeError, match="holds code in its pickle"):
        _run(code, _tiny_vit())
    assert os.listdir(tmp_path) == ["malicious.pt"]  # its payload never ran


@pytest.mark.parametrize("name", ["w.safetensors", "model.safetensors.index.json", "w.pt"])
def test_python_snippet_for_a_missing_source_goes_by_its_name(tmp_path, name):
    """Rendered where the checkpoint is not (another machine): the name decides; the
    snippet then runs once the file is there."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / name
    code = to_python(Recipe([StripPrefix("net.")], source=str(path)))
    assert "was not found" in code
    src = _model()
    sd_ = {f"net.{k}": v for k, v in src.state_dict().items()}
    if name.endswith(".index.json"):
        safetensors_torch.save_file(sd_, str(tmp_path / "model-1.safetensors"))
        path.write_text(json.dumps({"weight_map": {k: "model-1.safetensors" for k in sd_}}))
    elif name.endswith(".safetensors"):
        safetensors_torch.save_file(sd_, str(path))
    else:
        torch.save(sd_, path)
    dst = _model()
    for p in dst.parameters():
        nn.init.zeros_(p)
    _run(code, dst)
    _assert_holds(dst, src.state_dict())


# -- the replay command ---------------------------------------------------------------------

def test_replay_command_runs_as_pasted_with_model_args_and_folders(tmp_path):
    """The hint names the recipe with its folder and the model arguments the recipe
    stores; pasted in the folder pttui ran from, it repeats the export exactly."""
    import shlex

    from pttui.core.recipe.render import replay_command

    (tmp_path / "ckpts").mkdir()
    (tmp_path / "fixed").mkdir()
    src = tmp_path / "ckpts" / "k100.pt"
    shutil.copy(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", src)
    target = load_target("torchvision:squeezenet1_1", {"num_classes": 10})
    result = auto_fix(open_checkpoint(str(src)), target)
    assert result.refused is None and result.recipe.model_args == {"num_classes": 10}
    out = tmp_path / "fixed" / "k100.fixed.safetensors"
    _res, rpath = export_session(result.ckpt, result.recipe, str(out))
    cmd = replay_command(rpath, result.recipe, out=str(out), cwd=str(tmp_path))
    assert cmd == ("pttui fix ckpts/k100.pt --model torchvision:squeezenet1_1 --model-arg "
                   "num_classes=10 --recipe fixed/k100.fixed.safetensors.recipe.json "
                   "-o fixed/k100.fixed.replay.safetensors")
    words = shlex.split(cmd)
    assert words[:2] == ["pttui", "fix"]
    res = subprocess.run([sys.executable, "-m", "pttui.cli", *words[1:]], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    from safetensors.torch import load_file

    _same_tensors(load_file(tmp_path / "fixed" / "k100.fixed.replay.safetensors"),
                  load_file(out))


def test_replay_command_quotes_what_a_shell_would_split():
    import shlex

    from pttui.core.recipe.render import replay_command

    recipe = Recipe(source="/data/my ckpt.pt", target="path/to/net.py:Net",
                    model_args={"arch": "resnet", "depth": "50", "flag": "true", "n": 3,
                                "scale": 0.5, "names": ["a", "b"]})
    words = shlex.split(replay_command("/r dir/r.json", recipe, cwd="/elsewhere"))
    assert words[2] == "/data/my ckpt.pt" and words[words.index("--recipe") + 1] == "/r dir/r.json"
    args = [words[i + 1] for i, w in enumerate(words) if w == "--model-arg"]
    from pttui.core.target import parse_model_args

    assert parse_model_args(args) == recipe.model_args  # each parses back to its value
    assert "arch=resnet" in args and words[-2:] == ["-o", "OUT.safetensors"]
