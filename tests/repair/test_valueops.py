"""Value and shape ops end to end: a real file, the recipe, pttui's export, a strict load
into the real target; values compared with the libraries that define each repair."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pttui.core.base.meta import ReadError, TensorMeta
from pttui.core.read.reader import open_checkpoint
from pttui.core.recipe.joinops import Concat, Split, Stack, Unstack
from pttui.core.recipe.recipe import Drop, Recipe, StripPrefix
from pttui.core.recipe.valueops import (AdaptInputChannels, ResamplePosEmbed, Reshape,
                                        ResizeRows, Transpose)
from pttui.core.session.export import export_session


def exported(tmp_path, sd: dict, recipe: Recipe, name: str = "out.pt") -> dict:
    """``sd`` saved, repaired by pttui's export (verified), and read back by torch."""
    src = tmp_path / "src.pt"
    torch.save(sd, src)
    out = tmp_path / name
    result, _ = export_session(open_checkpoint(str(src)), recipe, str(out), write_recipe=False)
    assert result.verified and result.derived
    assert "with the recipe applied" in result.verdict
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(out)
    return torch.load(out, weights_only=True)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))


@pytest.mark.parametrize("name", ["out.pt", "out.safetensors"])
def test_a_transposed_mlp_loads_strictly_and_computes_the_same(tmp_path, name):
    model = mlp()
    stored = {k: v.t().contiguous() if v.dim() == 2 else v for k, v in model.state_dict().items()}
    got = exported(tmp_path, stored, Recipe([Transpose("*.weight")]), name)
    fresh = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    fresh.load_state_dict(got, strict=True)
    x = torch.randn(4, 32)
    torch.testing.assert_close(fresh(x), model(x))


def test_hf_conv1d_weights_become_nanogpt_linears(tmp_path):
    """nanoGPT's from_pretrained: these four weights are stored transposed by HF's Conv1D;
    the mask buffers are dropped. The recipe does what its loop does."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=40,
                                    n_positions=8)).state_dict()
    hf = {k: v for k, v in hf.items() if not k.endswith((".attn.masked_bias", ".attn.bias"))}
    transposed = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight"]
    expected = {k: v.t() if any(k.endswith(w) for w in transposed) else v for k, v in hf.items()}
    recipe = Recipe([Transpose(f"*.{w}") for w in transposed])
    got = exported(tmp_path, hf, recipe)
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def test_a_fused_qkv_split_and_joined_back(tmp_path):
    """nn.MultiheadAttention's in_proj_weight/bias into separate q/k/v Linears and back."""
    mha = nn.MultiheadAttention(8, 2)
    sd = {f"attn.{k}": v for k, v in mha.state_dict().items()}
    parts = ["attn.q.*", "attn.k.*", "attn.v.*"]
    split = Recipe([Split("attn.in_proj_*", parts)])
    got = exported(tmp_path, sd, split)
    q, k, v = sd["attn.in_proj_weight"].chunk(3)
    assert torch.equal(got["attn.q.weight"], q) and torch.equal(got["attn.v.weight"], v)
    assert torch.equal(got["attn.k.bias"], sd["attn.in_proj_bias"].chunk(3)[1])
    both = split.copy(ops=split.ops + [Concat(parts, "attn.in_proj_*")])
    assert both.apply(open_checkpoint_of(tmp_path, sd).tensors) == \
        open_checkpoint_of(tmp_path, sd).tensors  # joined back: the source, untouched


def open_checkpoint_of(tmp_path, sd):
    path = tmp_path / "meta_only.pt"
    if not path.exists():
        torch.save(sd, path)
    return open_checkpoint(str(path))


def test_per_expert_weights_stacked_and_unstacked(tmp_path):
    sd = {f"moe.experts.{i}.w1.weight": torch.randn(6, 4) for i in range(3)}
    got = exported(tmp_path, sd, Recipe([Stack("moe.experts.#.w1.weight", "moe.w1")]))
    assert torch.equal(got["moe.w1"], torch.stack([sd[f"moe.experts.{i}.w1.weight"]
                                                   for i in range(3)]))
    back = exported(tmp_path, got, Recipe([Unstack("moe.w1", "moe.experts.#.w1.weight")]),
                    "back.pt")
    assert all(torch.equal(back[k], v) for k, v in sd.items()) and list(back) == list(sd)


def test_a_linear_becomes_a_1x1_conv(tmp_path):
    lin = nn.Linear(6, 4)
    got = exported(tmp_path, lin.state_dict(), Recipe([Reshape("weight", (4, 6, 1, 1))]))
    conv = nn.Conv2d(6, 4, 1)
    conv.load_state_dict(got, strict=True)
    x = torch.randn(2, 6)
    torch.testing.assert_close(conv(x[:, :, None, None])[:, :, 0, 0], lin(x))


@pytest.mark.parametrize("method", ["timm", "torchvision"])
def test_a_vit_position_embedding_resampled_as_its_library_does(tmp_path, method):
    from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

    def vit(size):
        torch.manual_seed(0)
        return VisionTransformer(image_size=size, patch_size=8, num_layers=1, num_heads=2,
                                 hidden_dim=16, mlp_dim=32, num_classes=5)

    sd = vit(32).state_dict()  # a 4x4 grid plus the class token
    key = "encoder.pos_embedding"
    got = exported(tmp_path, sd, Recipe([ResamplePosEmbed(key, (6, 6), method=method)]))
    target = vit(48)
    target.load_state_dict(got, strict=True)
    if method == "torchvision":
        want = interpolate_embeddings(48, 8, dict(sd))[key]
    else:
        from timm.layers import resample_abs_pos_embed

        want = resample_abs_pos_embed(sd[key], [6, 6], num_prefix_tokens=1)
    torch.testing.assert_close(got[key], want, atol=1e-5, rtol=0)
    assert torch.equal(got[key][:, :1], sd[key][:, :1])  # the class token kept exactly


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_the_first_conv_adapted_as_timm_does(tmp_path, channels):
    from timm.models._manipulate import adapt_input_conv
    from torchvision.models import resnet18

    sd = resnet18(weights=None).state_dict()
    got = exported(tmp_path, sd, Recipe([AdaptInputChannels("conv1.weight", channels)]))
    model = resnet18(weights=None)
    model.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    model.load_state_dict(got, strict=True)
    torch.testing.assert_close(got["conv1.weight"], adapt_input_conv(channels,
                                                                     sd["conv1.weight"]))


def test_a_vocabulary_grown_like_transformers_mean_resizing(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=40,
                                       n_positions=8))
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    got = exported(tmp_path, sd, Recipe([ResizeRows("transformer.wte.weight", 42)]))
    model.resize_token_embeddings(42, mean_resizing=True)
    want = model.state_dict()["transformer.wte.weight"]
    assert torch.equal(got["transformer.wte.weight"][:40], sd["transformer.wte.weight"])
    # transformers adds noise of 1e-9 times the covariance around the same mean
    torch.testing.assert_close(got["transformer.wte.weight"][40:], want[40:], atol=1e-3, rtol=0)
    model.load_state_dict(got, strict=False)  # lm_head is tied to wte


def test_value_ops_refuse_what_does_not_fit_in_one_line():
    t = {"w": TensorMeta("w", (4, 6), "float32", "cpu"), "b": TensorMeta("b", (4,), "float32",
                                                                          "cpu"),
         "h": TensorMeta("h", (4, 6), "float16", "cpu")}
    cases = [
        (Transpose("b"), "no dims 0 and 1"),
        (Transpose("nothing*"), "no key matches"),
        (Reshape("w", (5, 5)), "24 elements"),
        (Concat(["w", "h"], "x", 0), "cast them to one dtype"),
        (Concat(["w", "b"], "x", 0), "shape"),
        (Split("w", ["p", "q", "r"]), "not 3 equal parts"),
        (Split("w", ["p", "q"], 0, (1, 2)), "add up to 3"),
        (ResamplePosEmbed("b", (3, 3)), "not [1, tokens, dim]"),
        (ResamplePosEmbed("h", (3, 3), prefix=1), "not a square grid"),
        (AdaptInputChannels("w", 1), "no conv weight"),
        (Stack("x.#", "y"), "no key matches"),
    ]
    for op, words in cases:
        with pytest.raises(ReadError) as err:
            op.apply(t)
        assert words in str(err.value) and "\n" not in str(err.value), (op, err.value)
    for build, words in [(lambda: Transpose("w", dims=(1, 1)), "two different dims"),
                         (lambda: Concat(["*.q"], "*.qkv"), "at least 2"),
                         (lambda: Concat(["*.q", "*.k"], "qkv"), "as many `*`"),
                         (lambda: Stack("x", "y"), "needs a `#`"),
                         (lambda: ResizeRows("w", 0), ">= 1"),
                         (lambda: ResamplePosEmbed("w", (3, 3), method="nearest"), "timm")]:
        with pytest.raises(ReadError) as err:
            build()
        assert words in str(err.value), err.value


def test_a_recipe_with_value_ops_is_version_2_and_replays_from_json(tmp_path):
    name_only = Recipe([StripPrefix("module."), Drop("*.tracked")])
    assert name_only.to_json()["pttui_recipe"] == 1  # an older pttui still reads it
    ops = [Transpose("*.weight", dims=(1, 0)), Concat(["*.q", "*.k"], "*.qk", 1),
           Split("a.*", ["b.*", "c.*"], 0, (1, 3)), Stack("e.#.w", "e.w", 1),
           Unstack("f", "f.#"), Reshape("g", (2, 2)), ResizeRows("v.*", 9, "regex", "zeros"),
           AdaptInputChannels("stem", 4), ResamplePosEmbed("pos", (7, 5), 1, (4, 4),
                                                            "torchvision")]
    recipe = Recipe(ops)
    data = json.loads(json.dumps(recipe.to_json()))
    assert data["pttui_recipe"] == 2
    path = tmp_path / "r.json"
    recipe.save(path)
    assert Recipe.load(path).ops == ops
    assert all(op.describe() and "\n" not in op.describe() for op in ops)


# -- properties ------------------------------------------------------------------------

dims = st.integers(1, 4)


@st.composite
def value_cases(draw):
    """A stored state_dict and one value op with an exact reverse."""
    kind = draw(st.sampled_from(["transpose", "concat", "stack", "reshape", "rows"]))
    a, b, c = draw(dims), draw(dims), draw(dims)
    if kind == "transpose":
        sd = {f"l{i}.weight": (a + i, b) for i in range(draw(st.integers(1, 3)))}
        return sd, Transpose("*.weight")
    if kind == "concat":
        sd = {"m.q": (a, c), "m.k": (b, c), "m.v": (a, c), "n.q": (a, c), "n.k": (b, c),
              "n.v": (a, c)}
        return sd, Concat(["*.q", "*.k", "*.v"], "*.qkv")
    if kind == "stack":
        sd = {f"x.{i}.w": (a, b) for i in range(draw(st.integers(1, 4)))}
        return sd, Stack("x.#.w", "x.w", draw(st.integers(0, 2)))
    if kind == "reshape":
        return {"w": (a, b)}, Reshape("w", (a * b, 1, 1))
    return {"emb": (a, b), "head": (a, b)}, ResizeRows("*", a + draw(dims))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(value_cases())
def test_an_op_then_its_reverse_gives_the_source_back(tmp_path_factory, case):
    """On metadata (the very TensorMetas) and on values (an export of both is the
    source bit for bit); the preview's shapes are the exported shapes."""
    shapes, op = case
    tmp = tmp_path_factory.mktemp("rev")
    sd = {k: torch.randn(s) for k, s in shapes.items()}
    torch.save(sd, tmp / "src.pt")
    ckpt = open_checkpoint(str(tmp / "src.pt"))
    forward = Recipe([op])
    preview = forward.apply(ckpt.tensors)
    both = Recipe([op, *op.reverse(ckpt.tensors)])
    assert both.apply(ckpt.tensors) == ckpt.tensors
    export_session(ckpt, forward, str(tmp / "out.pt"), write_recipe=False)
    out = torch.load(tmp / "out.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(m.shape)
                                                           for k, m in preview.items()}
    torch.save(out, tmp / "mid.pt")
    mid = open_checkpoint(str(tmp / "mid.pt"))
    back = Recipe(op.reverse(ckpt.tensors))
    export_session(mid, back, str(tmp / "back.pt"), write_recipe=False)
    again = torch.load(tmp / "back.pt", weights_only=True)
    assert list(again) == list(sd) and all(torch.equal(again[k], sd[k]) for k in sd)


# -- renderings ------------------------------------------------------------------------

def module_for(shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """A real nn.Module whose state_dict has exactly these keys and shapes."""
    root = nn.Module()
    for key, shape in shapes.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


RENDERED = [
    Recipe([Transpose("*.w", dims=(1, 0)), Reshape("s", (6, 1, 1))]),
    Recipe([Concat(["*.q", "*.k", "*.v"], "*.qkv"), ResizeRows("emb*", 9)]),
    Recipe([Split("f.in_proj", ["f.a", "f.b"], 0, (1, 3)), Stack("x.#.w", "x.w", 1)]),
    Recipe([Unstack("u", "u.#"), ResizeRows("emb", 2, fill="zeros")]),
    Recipe([AdaptInputChannels("conv", 1), ResamplePosEmbed("pos", (3, 3), method="timm")]),
    Recipe([AdaptInputChannels("conv", 5),
            ResamplePosEmbed("pos", (5, 4), 1, (2, 2), "torchvision")]),
]


@pytest.mark.parametrize("recipe", RENDERED, ids=lambda r: "+".join(o.name for o in r.ops))
def test_the_python_snippet_does_what_the_export_does(tmp_path, recipe):
    from pttui.core.recipe.render import to_python

    torch.manual_seed(0)
    sd = {"l.w": torch.randn(2, 3), "s": torch.randn(6), "m.q": torch.randn(2, 3),
          "m.k": torch.randn(1, 3), "m.v": torch.randn(2, 3), "emb": torch.randn(4, 3),
          "f.in_proj": torch.randn(4, 2), "x.0.w": torch.randn(2, 2), "x.1.w": torch.randn(2, 2),
          "u": torch.randn(3, 2), "conv": torch.randn(4, 3, 3, 3), "pos": torch.randn(1, 5, 4)}
    src = tmp_path / "src.pt"
    torch.save(sd, src)
    recipe.source = str(src)
    want = exported(tmp_path, sd, recipe)
    code = to_python(recipe)
    scope = {"model": module_for({k: tuple(v.shape) for k, v in want.items()})}
    exec(compile(code, "snippet", "exec"), scope)  # noqa: S102 - the code pttui printed
    got = scope["sd"]
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=0)


def test_renames_only_renderings_say_what_they_cannot_do():
    from pttui.core.recipe.render import to_hf, to_mmengine

    recipe = Recipe([StripPrefix("module."), Transpose("*.c_attn.weight"),
                     Concat(["*.q", "*.k"], "*.qk")])
    hf, mm = to_hf(recipe), to_mmengine(recipe)
    assert "`Transpose` conversion operation" in hf and "`Concatenate`" in hf
    assert "transpose `*.c_attn.weight`: changes values" in mm
    assert "'^module\\\\.'" in mm or "module" in mm


def test_a_replaced_head_renders_with_ignore_mismatched_sizes():
    from pttui.core.recipe.recipe import AcceptMissing
    from pttui.core.recipe.render import to_hf

    recipe = Recipe([Drop("^classifier\\.", "regex"),
                     AcceptMissing(("classifier.weight", "classifier.bias"))])
    text = to_hf(recipe)
    assert "ignore_mismatched_sizes=True)" in text and "classifier.weight" in text
    assert "ignore_mismatched_sizes" not in to_hf(Recipe([StripPrefix("module.")]))


def test_hostile_value_recipes_get_one_line(tmp_path):
    """A recipe from elsewhere: templates that would backtrack, sizes no machine has."""
    with pytest.raises(ReadError) as err:
        Concat(["*." * 20 + "q", "*." * 20 + "k"], "x")
    assert "at most 8 `*`" in str(err.value)
    sd = {"emb": torch.zeros(4, 3)}
    torch.save(sd, tmp_path / "src.pt")
    ckpt = open_checkpoint(str(tmp_path / "src.pt"))
    recipe = Recipe([ResizeRows("emb", 2**50)])
    assert recipe.apply(ckpt.tensors)["emb"].shape == (2**50, 3)  # the preview is free
    with pytest.raises(ReadError) as err:
        export_session(ckpt, recipe, str(tmp_path / "out.pt"), write_recipe=False)
    assert "more than this machine can give" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]  # nothing left behind
