"""Value steps found from the data, end to end through the real CLI: the file on disk,
``pttui check`` naming the relation, ``pttui fix --auto`` writing a file that loads
strictly into the real target and computes what the source model computes."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn

from tests.helpers import run_main

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torchvision.models import resnet18
    from torchvision.models.vision_transformer import VisionTransformer


    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.Module()
            self.attn.c_attn, self.attn.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Module()
            self.mlp.c_fc, self.mlp.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.attn.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                       for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn.c_proj(y.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


    class GPT(nn.Module):
        """nanoGPT's layout: plain nn.Linear where HF GPT-2 has Conv1D."""
        def __init__(self, vocab=40, d=16, layers=2, heads=2, positions=8):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab, d), wpe=nn.Embedding(positions, d),
                h=nn.ModuleList([Block(d, heads) for _ in range(layers)]),
                ln_f=nn.LayerNorm(d)))
            self.lm_head = nn.Linear(d, vocab, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx):
            pos = torch.arange(idx.shape[1])
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x)
            return self.lm_head(self.transformer.ln_f(x))


    def vit(image_size=32):
        torch.manual_seed(0)
        return VisionTransformer(image_size=image_size, patch_size=8, num_layers=1,
                                 num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)


    def gray():
        model = resnet18(weights=None)
        model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return model


    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)


    class Separate(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.Module()
            for name in ("q_proj", "k_proj", "v_proj"):
                setattr(self.attn, name, nn.Linear(8, 8))
            self.attn.out_proj = nn.Linear(8, 8)
''')


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    import importlib.util

    spec = importlib.util.spec_from_file_location("value_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return path, mod


def fix(capsys, tmp_path, src, spec, *args):
    out = tmp_path / "fixed.pt"
    rc, text, err = run_main(capsys, "fix", str(src), "--model", spec, "--auto", "-o",
                             str(out), *args)
    assert rc == 0, text + err
    assert "with the recipe applied" in text
    return torch.load(out, weights_only=True), text, json.loads(
        (tmp_path / "fixed.pt.recipe.json").read_text())


def gpt2(vocab=40):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=vocab,
                                      n_positions=8, attn_pdrop=0, resid_pdrop=0,
                                      embd_pdrop=0)).eval()


def test_hf_gpt2_into_nanogpt_gives_the_same_logits(tmp_path, capsys, models):
    path, mod = models
    hf = gpt2()
    sd = dict(hf.state_dict())
    for i in range(2):  # the causal-mask buffers older transformers saved
        sd[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
    torch.save(sd, tmp_path / "gpt2.pt")
    rc, text, _ = run_main(capsys, "check", str(tmp_path / "gpt2.pt"), "--model",
                           f"{path}:GPT")
    assert rc == 1 and "stored transposed (HF Conv1D layout)" in text
    got, text, recipe = fix(capsys, tmp_path, tmp_path / "gpt2.pt", f"{path}:GPT")
    assert recipe["pttui_recipe"] == 2
    assert sum(op["op"] == "transpose" for op in recipe["ops"]) == 4  # c_attn, c_proj x2, c_fc
    model = mod.GPT().eval()
    model.load_state_dict(got, strict=True)
    idx = torch.randint(0, 40, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-5, rtol=0)


def test_a_grown_vocabulary_and_its_tied_head_are_resized(tmp_path, capsys, models):
    path, mod = models
    torch.save(gpt2().state_dict(), tmp_path / "gpt2.pt")
    got, text, recipe = fix(capsys, tmp_path, tmp_path / "gpt2.pt", f"{path}:GPT",
                            "--model-arg", "vocab=42")
    resize = [op for op in recipe["ops"] if op["op"] == "resize_rows"]
    assert resize and resize[0]["rows"] == 42
    model = mod.GPT(vocab=42)
    model.load_state_dict(got, strict=True)
    src = torch.load(tmp_path / "gpt2.pt", weights_only=True)
    assert torch.equal(got["transformer.wte.weight"][:40], src["transformer.wte.weight"])


def test_a_vit_at_another_image_size(tmp_path, capsys, models):
    path, mod = models
    torch.save(mod.vit(32).state_dict(), tmp_path / "vit.pt")
    rc, text, _ = run_main(capsys, "check", str(tmp_path / "vit.pt"), "--model",
                           f"{path}:vit", "--model-arg", "image_size=48")
    assert "position embedding for a 4x4 grid, the model's for 6x6" in text
    got, text, recipe = fix(capsys, tmp_path, tmp_path / "vit.pt", f"{path}:vit",
                            "--model-arg", "image_size=48")
    assert [op["op"] for op in recipe["ops"]][-1] == "resample_pos_embed"
    mod.vit(48).load_state_dict(got, strict=True)


def test_a_gray_resnet_gets_the_rgb_conv_summed(tmp_path, capsys, models):
    from timm.models._manipulate import adapt_input_conv
    from torchvision.models import resnet18

    path, mod = models
    sd = resnet18(weights=None).state_dict()
    torch.save(sd, tmp_path / "r18.pt")
    got, text, recipe = fix(capsys, tmp_path, tmp_path / "r18.pt", f"{path}:gray")
    mod.gray().load_state_dict(got, strict=True)
    torch.testing.assert_close(got["conv1.weight"], adapt_input_conv(1, sd["conv1.weight"]))


@pytest.mark.parametrize("have, want", [("Separate", "Fused"), ("Fused", "Separate")])
def test_separate_and_fused_attention_projections(tmp_path, capsys, models, have, want):
    path, mod = models
    torch.manual_seed(0)
    src = getattr(mod, have)()
    torch.save(src.state_dict(), tmp_path / "attn.pt")
    got, text, recipe = fix(capsys, tmp_path, tmp_path / "attn.pt", f"{path}:{want}")
    assert {op["op"] for op in recipe["ops"]} >= {"concat" if want == "Fused" else "split"}
    model = getattr(mod, want)()
    model.load_state_dict(got, strict=True)
    fused = (model if want == "Fused" else src).attn
    separate = (src if want == "Fused" else model).attn
    q, k, v = fused.in_proj_weight.detach().chunk(3)
    assert torch.equal(separate.q_proj.weight.detach(), q)
    assert torch.equal(separate.v_proj.weight.detach(), v)
    assert torch.equal(separate.k_proj.bias.detach(), fused.in_proj_bias.detach().chunk(3)[1])


def test_a_classifier_with_other_classes_is_not_a_vocabulary(tmp_path, capsys):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None, num_classes=10).state_dict(), tmp_path / "r.pt")
    rc, text, _ = run_main(capsys, "check", str(tmp_path / "r.pt"), "--model",
                           "torchvision:resnet18")
    assert "resize" not in text and "classifier differs" in text


def test_a_square_weight_alone_is_not_transposed_by_guess(tmp_path, capsys):
    """Square weights cannot be told transposed by shape: without the evidence of a
    non-square one in the same blocks, nothing proposes to transpose them."""
    torch.save(nn.Linear(4, 4).state_dict(), tmp_path / "sq.pt")
    rc, text, _ = run_main(capsys, "check", str(tmp_path / "sq.pt"), "--model",
                           f"ref:{tmp_path / 'sq.pt'}")
    assert rc == 0 and "transpose" not in text


def test_the_conv1d_sample_becomes_its_nanogpt_weights(tmp_path, capsys):
    """sample_checkpoints/tiny_gpt_conv1d.pt: fix --auto gives tiny_gpt's own layout,
    every weight the sample's, transposed where HF's Conv1D stored it so."""
    from tests.helpers import SAMPLES

    spec = f"{SAMPLES / 'targets.py'}:tiny_gpt"
    got, text, recipe = fix(capsys, tmp_path, SAMPLES / "tiny_gpt_conv1d.pt", spec)
    import importlib.util

    loader = importlib.util.spec_from_file_location("sample_targets", SAMPLES / "targets.py")
    targets = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(targets)
    model = targets.tiny_gpt()
    result = model.load_state_dict(got, strict=False)
    assert result.missing_keys == ["lm_head.weight"] and not result.unexpected_keys  # tied
    stored = torch.load(SAMPLES / "tiny_gpt_conv1d.pt", weights_only=True)
    for k, v in stored.items():
        conv1d = k.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight"))
        assert torch.equal(got[k], v.t() if conv1d else v), k


def _tv_tiny_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=3,
                             hidden_dim=192, mlp_dim=768, num_classes=7)


@pytest.mark.parametrize("direction", ["timm->torchvision", "torchvision->timm"])
def test_timm_and_torchvision_vits_convert_by_their_known_layouts(tmp_path, capsys,
                                                                  direction):
    """The same ViT in two libraries: norm1/norm2 (ln_1/ln_2) have equal shapes, so no
    pairing by shape may decide; the known layouts do, and the outputs agree."""
    import timm

    torch.manual_seed(0)
    timm_vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2,
                                 num_classes=7).eval()
    tv_vit = _tv_tiny_vit().eval()
    src, dst = (timm_vit, tv_vit) if direction.startswith("timm") else (tv_vit, timm_vit)
    torch.save(src.state_dict(), tmp_path / "vit.pt")
    (tmp_path / "models.py").write_text(
        "import timm\nfrom torchvision.models.vision_transformer import VisionTransformer\n"
        "def tv():\n    return VisionTransformer(image_size=224, patch_size=16, num_layers=2,"
        " num_heads=3, hidden_dim=192, mlp_dim=768, num_classes=7)\n"
        "def timm_vit():\n    return timm.create_model('vit_tiny_patch16_224', "
        "pretrained=False, depth=2, num_classes=7)\n")
    spec = f"{tmp_path / 'models.py'}:" + ("tv" if dst is tv_vit else "timm_vit")
    out = tmp_path / "fixed.pt"
    rc, text, err = run_main(capsys, "fix", str(tmp_path / "vit.pt"), "--model", spec,
                             "--auto", "-o", str(out))
    assert rc == 0, text + err
    assert "VisionTransformer keys to" in text
    dst.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=1e-5, rtol=1e-5)
