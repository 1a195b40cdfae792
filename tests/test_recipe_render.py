"""Recipe renderings: the Python snippet runs against real torch; mmengine revise_keys and
transformers key_mapping, run with those libraries' own rules, rename like the recipe."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttui.core.recipe import (AcceptMissing, AddPrefix, Cast, Drop, KeyMap, Recipe,
                               RecipeConflict, RegexRename, SelectContainer, StripPrefix)
from pttui.core.recipe_render import to_hf, to_mmengine, to_python
from tests.test_recipe import metas, rename_ops, sd

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
