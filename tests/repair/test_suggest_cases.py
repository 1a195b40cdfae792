"""The repair engine on the cases an audit of issue 3 found wrong, end to end: real
torch models (torchvision built with weights=None, small nn.Modules written to a file
and loaded as the user's own code), real checkpoint files on disk, the real CLI.

Each test says what a user must see: no guessed pairing applied by ``fix --auto``,
tied weights counted as loaded, a missing head accepted, a rename rule inferred and
applied before harmless keys are dropped, diagnoses that agree with the suggestions.
"""

from __future__ import annotations

import importlib.util
import json
import re
import textwrap
import time

import pytest
import torch
import torchvision

from pttui.core.repair.analysis import analyse
from pttui.core.compare.strict import compare
from pttui.core.repair.diagnose.diagnosis import diagnose
from pttui.core.base.meta import TensorMeta
from pttui.core.read.reader import open_checkpoint
from pttui.core.recipe.recipe import AcceptMissing, Drop, Recipe
from pttui.core.repair.suggest.pipeline import suggest
from pttui.core.target.targets import Target, load_target

from tests.helpers import SAMPLES, run_main

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class QK(nn.Module):
        """Two projections of one shape: nothing tells which file key is which."""
        def __init__(self):
            super().__init__()
            self.attn = nn.ModuleDict({"query": nn.Linear(4, 4, bias=False),
                                       "key": nn.Linear(4, 4, bias=False)})


    class QKLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.ModuleList(
                nn.ModuleDict({"query": nn.Linear(4, 4, bias=False),
                               "key": nn.Linear(4, 4, bias=False)}) for _ in range(3))


    class Suffixed(nn.Module):
        """Same shapes; only the key names' suffixes tell the two apart."""
        def __init__(self):
            super().__init__()
            self.backbone = nn.ModuleDict({"conv": nn.Linear(4, 4, bias=False)})
            self.cls = nn.ModuleDict({"fc": nn.Linear(4, 4, bias=False)})


    class Tied(nn.Module):
        """An embedding and an output layer sharing one weight (saved once)."""
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.lin = nn.Linear(8, 8)
            self.head = nn.Linear(8, 100, bias=False)
            self.head.weight = self.emb.weight


    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Embedding(10, 4)
            self.layer = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
            self.register_buffer("position_ids", torch.arange(10).unsqueeze(0),
                                 persistent=False)


    class Classifier(nn.Module):
        """A base model wrapped with a task head, the way transformers builds them."""
        def __init__(self):
            super().__init__()
            self.bert = Encoder()
            self.classifier = nn.Linear(4, 2)


    class Wrapped(nn.Module):
        """Every key under `backbone.`."""
        def __init__(self, num_classes=1000):
            super().__init__()
            import torchvision
            self.backbone = torchvision.models.resnet18(weights=None, num_classes=num_classes)


    class TiedLM(nn.Module):
        """A language model whose output layer is its embedding (both names saved)."""
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.body = nn.Linear(8, 8)
            self.lm_head = nn.Linear(8, 50, bias=False)
            self.lm_head.weight = self.embed.weight


    class Attn(nn.Module):
        """Attention projections of one shape: query/key/value in two blocks."""
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(
                nn.ModuleDict({n: nn.Linear(8, 8) for n in ("query", "key", "value")})
                for _ in range(2))


    class BigHead(nn.Module):
        """Its last layer holds almost all of the model."""
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.out = nn.Linear(4, 1000)
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "mymodels.py"
    path.write_text(MODELS)
    spec = importlib.util.spec_from_file_location("_audit3_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return path, mod


def _spec(models, name: str) -> str:
    return f"{models[0]}:{name}"


def _save(sd, path) -> str:
    torch.manual_seed(0)
    torch.save(sd, path)
    return str(path)


def _check(capsys, path, spec, *args):
    rc, out, err = run_main(capsys, "check", str(path), "--model", spec, *args, "--json")
    assert rc in (0, 1), err
    return json.loads(out)


def _fix(capsys, path, spec, out, *args):
    rc, stdout, err = run_main(capsys, "fix", str(path), "--model", spec, *args, "--auto",
                               "-o", str(out), "--json")
    doc = json.loads(stdout) if stdout.strip() else {}
    recipe = None
    if rc == 0:
        recipe = json.loads(open(str(out) + ".recipe.json").read())
    return rc, doc, err, recipe


def _ops(recipe) -> list[dict]:
    return [op for op in recipe["ops"] if op["op"] != "select_container"]


# -- 1. ambiguity is refused, not guessed -----------------------------------------------

def test_same_shaped_keys_are_never_paired_by_position(models, tmp_path, capsys):
    spec = _spec(models, "QK")
    src = _save({"enc.k.weight": torch.full((4, 4), 1.0),
                 "enc.q.weight": torch.full((4, 4), 2.0)}, tmp_path / "kq.pt")
    doc = _check(capsys, src, spec)
    assert not [s for s in doc["suggestions"] if s["safe"]]
    assert not [s for s in doc["suggestions"] if s["kind"] == "structural"]
    rc, _, err, _ = _fix(capsys, src, spec, tmp_path / "out.pt")
    assert rc == 1 and "refusing" in err and not (tmp_path / "out.pt").exists()

    # in numbered layers each guess explains two pairs: still two rules for one group of
    # same-shaped keys, so they are offered for review only
    spec = _spec(models, "QKLayers")
    src = _save({f"enc.{i}.{n}.weight": torch.full((4, 4), float(i)) for i in range(3)
                 for n in "kq"}, tmp_path / "kq3.pt")
    doc = _check(capsys, src, spec)
    rules = [s for s in doc["suggestions"] if s["kind"] == "structural"]
    assert rules and all(not s["safe"] and s["confidence"] == "low" for s in rules)
    rc, _, _, _ = _fix(capsys, src, spec, tmp_path / "out3.pt")
    assert rc == 1 and not (tmp_path / "out3.pt").exists()


def test_a_unique_suffix_pairs_keys_of_one_shape(models, tmp_path, capsys):
    spec = _spec(models, "Suffixed")
    sd = {"stem.conv.weight": torch.randn(4, 4), "head.fc.weight": torch.randn(4, 4)}
    src = _save(sd, tmp_path / "suffix.pt")
    rc, _, err, recipe = _fix(capsys, src, spec, tmp_path / "out.pt")
    assert rc == 0, err
    assert _ops(recipe) == [{"op": "key_map", "mapping": {
        "stem.conv.weight": "backbone.conv.weight", "head.fc.weight": "cls.fc.weight"}}]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    models[1].Suffixed().load_state_dict(out, strict=True)
    assert torch.equal(out["backbone.conv.weight"], sd["stem.conv.weight"])
    assert torch.equal(out["cls.fc.weight"], sd["head.fc.weight"])


# -- structural pairing: one general rule, renames before benign drops --------------------

def _bn_renamed_resnet18():
    torch.manual_seed(0)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            v.fill_(7)  # real counters: a rename must keep them
    return {re.sub(r"(?<![a-z])bn(\d+)\.", r"conv\1_BN.", k): v for k, v in sd.items()}


def test_batchnorm_rename_is_one_rule_that_keeps_the_counters(tmp_path, capsys):
    renamed = _bn_renamed_resnet18()
    src = _save(renamed, tmp_path / "bn.pt")
    doc = _check(capsys, src, "torchvision:resnet18")
    first = doc["suggestions"][0]
    assert first["kind"] == "structural" and first["safe"] and first["confidence"] == "high"
    assert first["title"] == "rename `convN_BN` -> `bnN`"
    assert first["ops"][0]["replacement"] == r"bn\g<1>"
    assert first["coverage_keys"][1] == [122, 122]
    assert not any(s["kind"] in ("benign", "drop") for s in doc["suggestions"])

    rc, _, err, recipe = _fix(capsys, src, "torchvision:resnet18", tmp_path / "fixed.pt")
    assert rc == 0, err
    assert [op["op"] for op in _ops(recipe)] == ["regex_rename"]  # nothing dropped
    out = torch.load(tmp_path / "fixed.pt", weights_only=True)
    torchvision.models.resnet18(weights=None).load_state_dict(out, strict=True)
    assert out["layer1.0.bn2.num_batches_tracked"].item() == 7
    back = {re.sub(r"(?<![a-z])bn(\d+)\.", r"conv\1_BN.", k): v for k, v in out.items()}
    assert back.keys() == renamed.keys()
    assert all(torch.equal(back[k], renamed[k]) for k in renamed)


def test_tiny_vit_renamed_check_shows_the_block_rule():
    vit = load_target(f"{SAMPLES}/targets.py:tiny_vit")
    tensors = open_checkpoint(str(SAMPLES / "tiny_vit_renamed.pt")).tensors
    steps = suggest(tensors, vit)
    rule = next(s for s in steps if s.kind == "structural")
    assert rule.title == "rename `blocks.N` -> `layers.encoder_layer_N`" and rule.safe
    assert rule.after.coverage_keys[0] > rule.before.coverage_keys[0]
    assert steps[0] is rule  # it fixes the most; gamma/beta follow
    assert {s.title for s in steps} >= {"LayerNorm `gamma` -> `weight` (old naming)",
                                        "LayerNorm `beta` -> `bias` (old naming)"}


def test_harmless_extras_are_dropped_by_glob(tmp_path, capsys):
    sd = torchvision.models.squeezenet1_1(weights=None).state_dict()
    for i in (0, 3, 4):
        sd[f"features.{i}.num_batches_tracked"] = torch.tensor(5)
    src = _save(sd, tmp_path / "extra.pt")
    doc = _check(capsys, src, "torchvision:squeezenet1_1")
    assert [s["ops"] for s in doc["suggestions"]] == [
        [{"op": "drop", "pattern": "*.num_batches_tracked", "kind": "glob"}]]
    rc, _, err, recipe = _fix(capsys, src, "torchvision:squeezenet1_1", tmp_path / "o.pt")
    assert rc == 0, err and recipe


# -- tied weights -------------------------------------------------------------------------

def test_a_missing_tied_alias_counts_as_loaded(models, tmp_path, capsys):
    spec = _spec(models, "Tied")
    model = models[1].Tied()
    sd = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    src = _save(sd, tmp_path / "tied.pt")
    target = load_target(spec)
    report = compare(open_checkpoint(src).tensors, target)
    assert report.tied_missing == ["head.weight"] == report.missing
    assert report.coverage_keys == (4, 4)
    assert report.coverage_params == (report.elements_total, report.elements_total)

    doc = _check(capsys, src, spec)
    text = " ".join(doc["diagnosis"])
    assert "tied" in text and "no classifier" not in text
    assert [s["kind"] for s in doc["suggestions"]] == ["tied"]
    assert doc["suggestions"][0]["safe"]
    assert "initialisation" not in doc["suggestions"][0]["why"]

    rc, _, err, recipe = _fix(capsys, src, spec, tmp_path / "out.pt")
    assert rc == 0, err
    assert _ops(recipe) == [{"op": "accept_missing", "keys": ["head.weight"]}]
    fresh = models[1].Tied()
    result = fresh.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True),
                                   strict=False)
    assert result.missing_keys == ["head.weight"] and not result.unexpected_keys
    assert torch.equal(fresh.head.weight, sd["emb.weight"])  # loaded through its twin


# -- a missing head is accepted, a huge "head" is not -------------------------------------

def test_auto_accepts_a_missing_resnet_head(tmp_path, capsys):
    torch.manual_seed(0)
    sd = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
          if not k.startswith("fc.")}
    src = _save(sd, tmp_path / "headless.pt")
    rc, _, err, recipe = _fix(capsys, src, "torchvision:resnet18", tmp_path / "out.pt")
    assert rc == 0, err
    assert _ops(recipe) == [{"op": "accept_missing", "keys": ["fc.weight", "fc.bias"]}]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    result = torchvision.models.resnet18(weights=None).load_state_dict(out, strict=False)
    assert result.missing_keys == ["fc.weight", "fc.bias"] and not result.unexpected_keys
    assert all(torch.equal(out[k], v) for k, v in sd.items())


def test_a_base_model_gets_its_prefix_and_the_task_head_starts_untrained(models, tmp_path,
                                                                          capsys):
    spec = _spec(models, "Classifier")
    base = models[1].Encoder().state_dict()
    src = _save(base, tmp_path / "bert_base.pt")
    doc = _check(capsys, src, spec)
    notes = " ".join(doc["diagnosis"])
    assert "`bert.`" in notes and "share no key names" not in notes
    assert doc["suggestions"][0]["title"] == "add prefix `bert.`"
    rc, _, err, recipe = _fix(capsys, src, spec, tmp_path / "out.pt")
    assert rc == 0, err
    assert _ops(recipe) == [{"op": "add_prefix", "prefix": "bert.", "only": None},
                            {"op": "accept_missing",
                             "keys": ["classifier.weight", "classifier.bias"]}]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    result = models[1].Classifier().load_state_dict(out, strict=False)
    assert sorted(result.missing_keys) == ["classifier.bias", "classifier.weight"]
    assert all(torch.equal(out["bert." + k], v) for k, v in base.items())


def test_a_head_that_is_most_of_the_model_is_refused(models, tmp_path, capsys):
    spec = _spec(models, "BigHead")
    src = _save({k: v for k, v in models[1].BigHead().state_dict().items()
                 if k.startswith("body.")}, tmp_path / "body.pt")
    rc, _, err, _ = _fix(capsys, src, spec, tmp_path / "out.pt")
    assert rc == 1 and "uninitialised" in err and not (tmp_path / "out.pt").exists()


# -- the wrong variant, and no junk --------------------------------------------------------

def test_wrong_variant_offers_nothing_safe(tmp_path, capsys):
    torch.manual_seed(0)
    sd = torchvision.models.resnet34(weights=None).state_dict()
    src = _save(sd, tmp_path / "r34.pt")
    doc = _check(capsys, src, "torchvision:resnet18")
    assert any("variant" in d for d in doc["diagnosis"])
    assert doc["suggestions"] == []  # no "drop 16 harmless keys", no "drop 80 keys"
    wrapped = _save({"module." + k: v for k, v in sd.items()}, tmp_path / "r34_dp.pt")
    doc = _check(capsys, wrapped, "torchvision:resnet18")
    assert doc["suggestions"] and not any(s["safe"] for s in doc["suggestions"])
    assert "variant" in doc["suggestions"][0]["why"]


def test_dataparallel_gets_one_step_and_each_step_raises_coverage(tmp_path, capsys):
    model = torchvision.models.resnet18(weights=None)
    src = _save(torch.nn.DataParallel(model).state_dict(), tmp_path / "dp.pt")
    doc = _check(capsys, src, "torchvision:resnet18")
    assert [s["title"] for s in doc["suggestions"]] == ["strip prefix `module.`"]
    # FSDP-style: a wrapper at the front and again inside some keys
    fsdp = {"_fsdp_wrapped_module." + k.replace("layer2.0.", "layer2.0._fsdp_wrapped_module."):
            v for k, v in model.state_dict().items()}
    tensors = open_checkpoint(_save(fsdp, tmp_path / "fsdp.pt")).tensors
    target = load_target("torchvision:resnet18")
    before = compare(tensors, target)
    for s in suggest(tensors, target):
        assert s.after.coverage_keys[0] > before.coverage_keys[0], s.title


def test_optimizer_state_refusal_says_so(tmp_path, capsys):
    rc, _, err = run_main(capsys, "fix", str(SAMPLES / "tiny_vit_optimizer_only.pt"),
                          "--model", f"{SAMPLES}/targets.py:tiny_vit", "--auto", "-o",
                          str(tmp_path / "out.pt"))
    assert rc == 1 and "optimizer state, not model weights" in err
    assert "100%" not in err


# -- diagnoses agree with what happened --------------------------------------------------

def test_same_prefix_on_both_sides_is_no_prefix_change(models, tmp_path):
    spec = _spec(models, "Wrapped")
    sd = models[1].Wrapped(num_classes=10).state_dict()
    tensors = open_checkpoint(_save(sd, tmp_path / "w10.pt")).tensors
    target = load_target(spec)
    notes = diagnose(tensors, target, compare(tensors, target))
    assert not any("prefix" in n for n in notes), notes
    assert notes[0].startswith("only the classifier differs: 10 vs 1000 classes")


def test_peft_prefix_is_named_as_peft(tmp_path):
    sd = torchvision.models.resnet18(weights=None).state_dict()
    tensors = open_checkpoint(_save({"base_model.model." + k: v for k, v in sd.items()},
                                    tmp_path / "peft.pt")).tensors
    target = load_target("torchvision:resnet18")
    first = diagnose(tensors, target, compare(tensors, target))[0]
    assert "`base_model.model.`" in first and "PEFT" in first and "Lightning" not in first


def test_an_input_layer_mismatch_is_named_as_one(tmp_path, capsys):
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["conv1.weight"] = torch.randn(64, 1, 7, 7)  # trained on grayscale
    src = _save(sd, tmp_path / "gray.pt")
    doc = _check(capsys, src, "torchvision:resnet18")
    assert doc["diagnosis"][0].startswith("only the input layer differs (`conv1.weight`: "
                                          "[64, 1, 7, 7] vs [64, 3, 7, 7])")
    assert "1 input channel," in doc["diagnosis"][0]
    assert all(not d.startswith((":", " ")) and "no common pattern" not in d
               for d in doc["diagnosis"])
    title = doc["suggestions"][0]["title"]
    assert "input layer `conv1`" in title and "head" not in title
    rc, _, err, recipe = _fix(capsys, src, "torchvision:resnet18", tmp_path / "out.pt")
    assert rc == 0, err
    assert recipe["ops"][-1] == {"op": "accept_missing", "keys": ["conv1.weight"]}


@pytest.mark.parametrize("dropped", [["classifier.1.weight", "classifier.1.bias"],
                                     ["classifier.1.bias"]])
def test_a_drop_left_over_after_rebuilding_the_model_says_undo_it(dropped):
    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1_finetuned_10cls.pt"))
    recipe = Recipe([Drop(f"^(?:{'|'.join(map(re.escape, dropped))})$", kind="regex"),
                     AcceptMissing(tuple(dropped))])
    rebuilt = load_target("torchvision:squeezenet1_1", {"num_classes": 10})
    result = analyse(ckpt, recipe, rebuilt)
    assert any("undo that drop" in n for n in result.diagnosis), result.diagnosis
    assert not any("no classifier" in n for n in result.diagnosis)
    unaccepted = Recipe([Drop(f"^(?:{'|'.join(map(re.escape, dropped))})$", kind="regex")])
    result = analyse(ckpt, unaccepted, rebuilt)
    assert any("undo that drop" in n for n in result.diagnosis)
    assert not any(s.kind == "head" for s in result.suggestions)  # not a "missing head"


# -- speed at 100,000 keys ----------------------------------------------------------------

def _big(n: int = 100_000):
    keys = [f"layers.{i // 10}.sub{i % 10}.weight" for i in range(n)]
    expected = {k: TensorMeta(k, (64, 64 + i % 7), "float32", "meta")
                for i, k in enumerate(keys)}
    return expected, Target("big", {}, expected, frozenset(expected), frozenset(), {}, None,
                            "model", "big")


def test_structural_rename_at_100k_keys_is_one_rule_and_fast():
    expected, target = _big()
    tensors = {"blocks." + k[len("layers."):]: m._replace(key="blocks." + k[len("layers."):])
               for k, m in expected.items()}
    start = time.process_time()
    compare(tensors, target)
    steps = suggest(tensors, target)
    cpu = time.process_time() - start
    assert steps[0].title == "rename `blocks` -> `layers`" and steps[0].after.strict_ok
    assert steps[0].safe
    assert cpu < 3.0  # was 2.8 s of CPU before, and grows with the key count squared


def test_head_mismatch_plus_5000_benign_keys_at_100k_is_fast():
    expected, target = _big()
    tensors = dict(expected)
    last = next(reversed(expected))
    tensors[last] = TensorMeta(last, (3, 64), "float32", "cpu")
    for j in range(5000):
        k = f"layers.{j}.num_batches_tracked"
        tensors[k] = TensorMeta(k, (), "int64", "cpu")
    start = time.process_time()
    compare(tensors, target)
    steps = suggest(tensors, target)
    cpu = time.process_time() - start
    by_kind = {s.kind: s for s in steps}
    assert by_kind["benign"].ops == [Drop("*.num_batches_tracked")]
    assert by_kind["head"].ops[1] == AcceptMissing((last,))
    assert cpu < 3.0  # was 5.6 s: a set rebuilt for every one of 5,000 keys


def test_the_wizard_and_the_verdict_do_not_call_a_tied_alias_uninitialised(models, tmp_path):
    from pttui.core.repair import report_text
    from pttui.core.repair.guide import next_step
    from pttui.core.recipe.recipe import Recipe

    spec = _spec(models, "Tied")
    sd = {k: v for k, v in models[1].Tied().state_dict().items() if k != "head.weight"}
    ckpt = open_checkpoint(_save(sd, tmp_path / "tied.pt"))
    target = load_target(spec)
    step = next_step(ckpt, Recipe(), target, set())
    assert step.ops and not step.leaves_missing and step.stage == "leftover"
    report = compare(step.ops[0].apply(ckpt.tensors), target,
                     accepted_missing=tuple(step.ops[0].keys))
    line = report_text.verdict(report)
    assert "tied alias loads through its twin" in line and "initialisation" not in line


# -- what fix says about tied names in .safetensors, and about renames left for review ----

def test_fix_to_safetensors_says_how_to_load_a_tied_name(models, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, load_model

    spec = _spec(models, "TiedLM")
    torch.manual_seed(0)
    sd = models[1].TiedLM().state_dict()
    assert set(sd) == {"embed.weight", "body.weight", "body.bias", "lm_head.weight"}
    src = _save(sd, tmp_path / "tied.pt")
    out = tmp_path / "x.safetensors"
    rc, stdout, err = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o", str(out))
    assert rc == 0, err
    assert "strict load: OK" in stdout
    note = [ln for ln in stdout.splitlines() if "tied name" in ln]
    assert len(note) == 1 and note[0].strip().startswith("note: 1 tied name stored once "
                                                         "(lm_head.weight = embed.weight)")
    assert "safetensors.torch.load_model(model, OUT)" in note[0]
    assert "a .pt output keeps both names" in note[0]

    with safe_open(str(out), "pt") as f:
        assert "lm_head.weight" not in f.keys()
        assert json.loads(f.metadata()["pttui.aliases"]) == {"lm_head.weight": "embed.weight"}
    # what the note says: a strict load_state_dict misses the alias ...
    with pytest.raises(RuntimeError, match="lm_head.weight"):
        models[1].TiedLM().load_state_dict(load_file(str(out)), strict=True)
    # ... and load_model loads it strictly, the tie filling the alias
    fresh = models[1].TiedLM()
    missing, unexpected = load_model(fresh, str(out), strict=True)
    assert not missing and not unexpected
    assert fresh.lm_head.weight is fresh.embed.weight
    assert torch.equal(fresh.lm_head.weight, sd["embed.weight"])
    assert torch.equal(fresh.body.weight, sd["body.weight"])

    rc, stdout, _ = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o",
                             str(tmp_path / "y.safetensors"), "--json")
    doc = json.loads(stdout)
    assert rc == 0 and doc["aliases"] == {"lm_head.weight": "embed.weight"}
    assert "load_model" in doc["tied_note"]
    # a .pt output keeps both names: no note
    rc, stdout, _ = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o",
                             str(tmp_path / "y.pt"))
    assert rc == 0 and "tied name" not in stdout
    models[1].TiedLM().load_state_dict(torch.load(tmp_path / "y.pt", weights_only=True),
                                       strict=True)


def test_auto_refusal_names_the_renames_left_for_review(models, tmp_path, capsys):
    spec = _spec(models, "Attn")
    short = {"query": "q", "key": "k", "value": "v"}
    sd = {re.sub(r"\.(query|key|value)\.", lambda m: f".{short[m.group(1)]}.", k): v
          for k, v in models[1].Attn().state_dict().items()}
    assert "blocks.0.q.weight" in sd and len(sd) == 12
    src = _save(sd, tmp_path / "attn.pt")
    doc = _check(capsys, src, spec)
    review = [s for s in doc["suggestions"] if not s["safe"]]
    assert len(review) == 3 and not [s for s in doc["suggestions"] if s["safe"]]

    rc, stdout, err = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o",
                               str(tmp_path / "out.pt"))
    assert rc == 1 and not (tmp_path / "out.pt").exists()
    assert "refusing" in err
    assert "found 3 renames (12 keys), but they need review" in err
    assert "ambiguous by shape" in err and "`pttui check` lists them" in err
    assert "does not hold this model's weights" not in err

    rc, stdout, err = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o",
                               str(tmp_path / "out.pt"), "--json")
    assert rc == 1 and "need review" in json.loads(stdout)["refused"]


def test_a_wrong_file_without_renames_still_says_check_the_model(models, tmp_path, capsys):
    spec = _spec(models, "Attn")
    src = _save({"other.weight": torch.randn(3, 5)}, tmp_path / "other.pt")
    rc, _, err = run_main(capsys, "fix", src, "--model", spec, "--auto", "-o",
                          str(tmp_path / "out.pt"))
    assert rc == 1 and "does not hold this model's weights" in err and "review" not in err


def test_a_reference_target_is_not_told_to_rebuild_with_num_classes(tmp_path):
    """`ref:` is a file, not a model to build: only drop-and-accept applies to it."""
    from pttui.core.repair.diagnose.diagnosis import diagnose

    target = load_target(f"ref:{SAMPLES / 'squeezenet1_1.pt'}")
    tensors = open_checkpoint(str(SAMPLES / "squeezenet1_1_finetuned_10cls.pt")).tensors
    lines = diagnose(tensors, target, compare(tensors, target))
    assert any("10 vs 1000 classes" in d for d in lines), lines
    assert not any("num_classes" in d for d in lines), lines
    model = load_target("torchvision:squeezenet1_1")
    assert any("num_classes=10" in d for d in diagnose(tensors, model, compare(tensors, model)))


def test_a_task_head_on_a_base_model_is_dropped_but_lora_weights_never_are(tmp_path, capsys):
    """A fine-tuned classifier checkpoint against the backbone: every backbone key loads
    once `fc` goes, so --auto drops it. LoRA adapter keys are the fine-tune itself:
    dropping them is offered for review only, and --auto refuses, saying why."""
    base = torchvision.models.resnet18(weights=None)
    sd = dict(base.state_dict())
    sd["fc2.weight"], sd["fc2.bias"] = torch.randn(10, 1000), torch.randn(10)  # a task head
    src = _save(sd, tmp_path / "task.pt")
    rc, _, err, recipe = _fix(capsys, src, "torchvision:resnet18", tmp_path / "base.pt")
    assert rc == 0, err
    assert _ops(recipe) == [{"op": "drop", "pattern": "fc2.*", "kind": "glob"}]
    loaded = torch.load(tmp_path / "base.pt", weights_only=True)
    assert torchvision.models.resnet18(weights=None).load_state_dict(loaded)  # strict

    lora = dict(base.state_dict())
    lora["layer1.0.conv1.lora_A.weight"] = torch.randn(4, 64 * 9)
    lora["layer1.0.conv1.lora_B.weight"] = torch.randn(64, 4)
    src = _save(lora, tmp_path / "lora.pt")
    doc = _check(capsys, src, "torchvision:resnet18")
    step = next(s for s in doc["suggestions"] if s["title"].startswith("drop 2 unexpected"))
    assert not step["safe"] and "LoRA" in step["why"]
    rc, _, err, _ = _fix(capsys, src, "torchvision:resnet18", tmp_path / "l.pt")
    assert rc == 1 and not (tmp_path / "l.pt").exists()
    # other adapter namings (kohya lora_down/up, IA3) and a partial EMA copy: never safe
    for i, extra in enumerate((["layer1.0.conv1.lora_down.weight", "layer1.0.conv1.lora_up.weight"],
                               ["layer1.0.conv1.ia3_l"], ["ema.fc.weight", "ema.fc.bias"])):
        sd = dict(base.state_dict())
        for k in extra:
            sd[k] = torch.randn(4, 4)
        src = _save(sd, tmp_path / f"x{i}.pt")
        rc, _, err, _ = _fix(capsys, src, "torchvision:resnet18", tmp_path / f"x{i}.out.pt")
        assert rc == 1 and not (tmp_path / f"x{i}.out.pt").exists(), extra
