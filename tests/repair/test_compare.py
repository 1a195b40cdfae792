"""compare / diagnose against real torchvision models and the sample checkpoints; where
it matters, checked against what torch's own load_state_dict(strict=True) does."""

from __future__ import annotations

import json
import time
import textwrap
from collections import OrderedDict

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pttui.core.compare.strict import UNKNOWN, compare, expand_group, group_keys
from pttui.core.repair.diagnose.diagnosis import best_container, diagnose, variant_mismatch
from pttui.core.base.meta import TensorMeta
from pttui.core.read.reader import open_checkpoint
from pttui.core.target.targets import Target, load_target

from tests.helpers import SAMPLES


def _metas(sd, prefix: str = "") -> dict[str, TensorMeta]:
    return {prefix + k: TensorMeta(prefix + k, tuple(v.shape),
                                   str(v.dtype).removeprefix("torch."), "cpu")
            for k, v in sd.items()}


def _torch_strict_ok(model: nn.Module, sd) -> bool:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError:
        return False
    return True


def _sample(name: str, **kw):
    ckpt = open_checkpoint(str(SAMPLES / name), **kw)
    return ckpt, ckpt.tensors


@pytest.fixture(scope="module")
def squeeze():
    return load_target("torchvision:squeezenet1_1")


@pytest.fixture(scope="module")
def vit():
    return load_target(f"{SAMPLES}/targets.py:tiny_vit")


@pytest.fixture(scope="module")
def r18():
    return load_target("torchvision:resnet18")


@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("r34") / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    return str(path)


# -- the samples ----------------------------------------------------------------------

def test_clean_squeezenet_is_strict_ok(squeeze):
    ckpt, tensors = _sample("squeezenet1_1.pt")
    report = compare(tensors, squeeze, ckpt_metadata=ckpt.state_metadata)
    assert report.strict_ok and report.ok_with_accepted
    assert report.coverage_keys == (52, 52)
    assert report.coverage_params == (1235496, 1235496)
    assert report.missing == report.unexpected == report.shape_mismatch == []
    doc = json.loads(json.dumps(report.to_json()))
    assert {"strict_ok", "missing", "unexpected", "shape_mismatch", "matched", "coverage",
            "dtype_diff", "benign_missing", "benign_unexpected"} <= set(doc)
    assert doc["strict_ok"] is True and doc["matched"] == 52
    assert "fits the model" in diagnose(tensors, squeeze, report)[0]


@pytest.mark.parametrize("name,prefix,why", [
    ("squeezenet1_1_dataparallel.pt", "module.", "DataParallel"),
    ("squeezenet1_1_compiled.pt", "_orig_mod.", "torch.compile"),
])
def test_wrapper_prefix(squeeze, name, prefix, why):
    _, tensors = _sample(name)
    report = compare(tensors, squeeze)
    assert not report.strict_ok
    assert len(report.missing) == len(report.unexpected) == 52 and report.matched == []
    assert all(k.startswith(prefix) for k in report.unexpected)
    first = diagnose(tensors, squeeze, report)[0]
    assert f"`{prefix}`" in first and why in first and "52/52" in first
    assert not variant_mismatch(report, tensors, squeeze)


def test_finetuned_head(squeeze):
    _, tensors = _sample("squeezenet1_1_finetuned_10cls.pt")
    report = compare(tensors, squeeze)
    assert [m.key for m in report.shape_mismatch] == ["classifier.1.weight", "classifier.1.bias"]
    assert report.shape_mismatch[0].checkpoint_shape == (10, 512, 1, 1)
    assert report.shape_mismatch[0].model_shape == (1000, 512, 1, 1)
    assert report.missing == report.unexpected == []
    assert report.coverage_keys == (50, 52)
    notes = diagnose(tensors, squeeze, report)
    assert "classifier" in notes[0] and "10 vs 1000 classes" in notes[0]
    assert "`classifier.1.{weight,bias}`" in notes[0]
    assert not variant_mismatch(report, tensors, squeeze)
    assert compare(tensors, load_target("torchvision:squeezenet1_1",
                                        {"num_classes": 10})).strict_ok


def test_lightning_prefix_and_container(vit):
    ckpt, tensors = _sample("tiny_vit_lightning.ckpt")
    report = compare(tensors, vit)
    assert report.matched == []
    notes = diagnose(tensors, vit, report, ckpt.containers)
    assert "`model.`" in notes[0] and "Lightning" in notes[0]
    path, best = best_container(ckpt, vit)
    assert path == ("state_dict",)  # not the optimizer state beside it
    assert best.missing  # the raw report: the prefix is still there


def test_renamed_keys_pair_up_by_shape(vit):
    _, tensors = _sample("tiny_vit_renamed.pt")
    report = compare(tensors, vit)
    assert len(report.missing) == len(report.unexpected) == 26
    notes = diagnose(tensors, vit, report)
    assert any("pair up by shape" in n for n in notes)
    assert not variant_mismatch(report, tensors, vit)


def test_optimizer_state(vit):
    ckpt, tensors = _sample("tiny_vit_optimizer_only.pt")
    report = compare(tensors, vit)
    notes = diagnose(tensors, vit, report, ckpt.containers)
    assert "optimizer state, not model weights" in notes[0]
    lightning = open_checkpoint(str(SAMPLES / "tiny_vit_lightning.ckpt"),
                                select=("optimizer_states",))
    notes = diagnose(lightning.tensors, vit, compare(lightning.tensors, vit),
                     lightning.containers)
    assert "optimizer state" in notes[0] and "`state_dict`" in notes[0]


def test_training_state_best_container(vit):
    ckpt, _ = _sample("tiny_vit_training_state.pt")
    path, report = best_container(ckpt, vit)
    assert path == ("model",) and report.strict_ok


def test_reference_target(vit):
    ref = load_target(f"ref:{SAMPLES}/tiny_vit.safetensors")
    _, legacy = _sample("tiny_vit_legacy.pt")
    assert compare(legacy, ref).strict_ok
    _, renamed = _sample("tiny_vit_renamed.pt")
    report = compare(renamed, ref)
    assert not report.strict_ok and len(report.missing) == 26
    # a model checked against the wrong architecture shares no names
    _, squeeze_sd = _sample("squeezenet1_1.pt")
    report = compare(squeeze_sd, ref)
    assert "share no key names" in diagnose(squeeze_sd, ref, report)[0]


# -- variants --------------------------------------------------------------------------

def test_resnet34_into_resnet18_is_a_variant(r18, resnet34_file):
    ckpt = open_checkpoint(resnet34_file)
    report = compare(ckpt.tensors, r18, ckpt_metadata=ckpt.state_metadata)
    assert report.missing == [] and report.unexpected and report.shape_mismatch == []
    assert variant_mismatch(report)
    notes = diagnose(ckpt.tensors, r18, report)
    assert "renaming will not fix it" in notes[0] and "`layer3.{2..5}`" in notes[0]
    # wrapped in DataParallel: still a variant once `module.` is looked through
    wrapped = {"module." + k: t._replace(key="module." + k) for k, t in ckpt.tensors.items()}
    raw = compare(wrapped, r18)
    assert not variant_mismatch(raw) and variant_mismatch(raw, wrapped, r18)
    notes = diagnose(wrapped, r18, raw)
    assert "`module.`" in notes[0] and "renaming will not fix it" in notes[1]


def test_wider_variant_by_shapes():
    target = load_target("torchvision:wide_resnet50_2")
    with torch.device("meta"):
        sd = torchvision.models.resnet50().state_dict()
    report = compare(_metas(sd), target)
    assert report.missing == report.unexpected == [] and len(report.shape_mismatch) > 50
    assert variant_mismatch(report)
    assert "different variant" in diagnose(_metas(sd), target, report)[0]


def test_missing_head_is_not_a_variant(r18):
    with torch.device("meta"):
        sd = torchvision.models.resnet18().state_dict()
    tensors = _metas({k: v for k, v in sd.items() if not k.startswith("fc.")})
    report = compare(tensors, r18)
    assert report.missing == ["fc.weight", "fc.bias"] and not variant_mismatch(report)
    assert "no classifier" in diagnose(tensors, r18, report)[0]
    accepted = compare(tensors, r18, accepted_missing=["fc.weight", "fc.bias", "x"])
    assert accepted.accepted_missing == ["fc.weight", "fc.bias"]
    assert accepted.ok_with_accepted and not accepted.strict_ok


# -- agreement with torch's load_state_dict(strict=True) ---------------------------------

def test_strict_ok_agrees_with_torch_on_samples(squeeze, vit):
    cases = [("squeezenet1_1.pt", squeeze, torchvision.models.squeezenet1_1),
             ("squeezenet1_1_dataparallel.pt", squeeze, torchvision.models.squeezenet1_1),
             ("squeezenet1_1_finetuned_10cls.pt", squeeze, torchvision.models.squeezenet1_1),
             ("tiny_vit_renamed.pt", vit, None)]
    from safetensors.torch import load_file

    for name, target, build in cases:
        sd = torch.load(SAMPLES / name, weights_only=True)
        model = build(weights=None) if build else _tiny_vit()
        ckpt = open_checkpoint(str(SAMPLES / name))
        assert compare(ckpt.tensors, target, ckpt_metadata=ckpt.state_metadata).strict_ok \
            == _torch_strict_ok(model, sd), name
    ckpt = open_checkpoint(str(SAMPLES / "tiny_vit.safetensors"))
    assert compare(ckpt.tensors, vit, ckpt_metadata=ckpt.state_metadata).strict_ok
    assert _torch_strict_ok(_tiny_vit(), load_file(SAMPLES / "tiny_vit.safetensors"))


def _tiny_vit():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tv_for_test", SAMPLES / "targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.tiny_vit()


def test_num_batches_tracked_follows_metadata(r18):
    model = torchvision.models.resnet18(weights=None)
    sd = model.state_dict()
    trimmed = OrderedDict((k, v) for k, v in sd.items() if "num_batches_tracked" not in k)
    trimmed._metadata = sd._metadata  # BatchNorm version 2: torch wants the counters
    tensors = _metas(trimmed)
    assert not _torch_strict_ok(model, trimmed)
    with_md = compare(tensors, r18, ckpt_metadata=trimmed._metadata)
    assert not with_md.strict_ok and len(with_md.missing) == 20
    assert with_md.benign_missing == with_md.missing
    assert "only harmless keys differ" in diagnose(tensors, r18, with_md)[0]
    plain = dict(trimmed)  # no _metadata (as from safetensors): torch fills them in
    assert _torch_strict_ok(model, plain)
    no_md = compare(tensors, r18, ckpt_metadata=None)
    assert no_md.strict_ok and len(no_md.auto_filled) == 20 and no_md.coverage_keys == (122, 122)
    assert not compare(tensors, r18, ckpt_metadata=UNKNOWN).strict_ok  # unknown: strict


def test_scalar_from_one_element_vector_and_dtype_casts():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.temp = nn.Parameter(torch.tensor(1.0))
            self.lin = nn.Linear(2, 2)

    target = Target("x", {}, _metas(M().state_dict()))
    sd = {"temp": torch.ones(1), "lin.weight": torch.ones(2, 2, dtype=torch.float16),
          "lin.bias": torch.ones(2)}
    report = compare(_metas(sd), target)
    assert report.strict_ok == _torch_strict_ok(M(), sd) is True
    assert [(d.key, d.checkpoint_dtype, d.model_dtype) for d in report.dtype_diff] == \
        [("lin.weight", "float16", "float32")]
    assert any("load_state_dict casts" in n for n in diagnose(_metas(sd), target, report))
    sd["temp"] = torch.ones(2)
    assert compare(_metas(sd), target).strict_ok == _torch_strict_ok(M(), sd) is False


def test_tied_and_non_persistent(tmp_path):
    path = tmp_path / "lm.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class TinyLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(16, 8)
                self.attn = nn.Linear(8, 8)
                self.register_buffer("mask", torch.ones(4, 4), persistent=False)
                self.head = nn.Linear(8, 16, bias=False)
                self.head.weight = self.emb.weight
    """))
    target = load_target(f"{path}:TinyLM")
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lm_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.TinyLM()
    # saved the safetensors way: the tied twin only once
    sd = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    report = compare(_metas(sd), target)
    assert report.missing == ["head.weight"] and report.tied_missing == ["head.weight"]
    assert report.coverage_params == (report.elements_total, report.elements_total)
    assert report.strict_ok == _torch_strict_ok(model, sd) is False
    assert any("tied" in n for n in diagnose(_metas(sd), target, report))
    # a non-persistent buffer saved anyway: torch calls it unexpected; it is harmless
    sd = dict(model.state_dict(), mask=torch.ones(4, 4))
    report = compare(_metas(sd), target)
    assert report.unexpected == report.benign_unexpected == ["mask"]
    assert report.strict_ok == _torch_strict_ok(model, sd) is False


def test_benign_names():
    exp = {k: TensorMeta(k, s, "float32", "meta") for k, s in
           [("h.0.attn.c_attn.bias", (24,)), ("w", (2,))]}
    ck = dict(exp)
    for k, s in [("h.0.attn.bias", (1, 1, 8, 8)), ("h.0.attn.masked_bias", ()),
                 ("emb.position_ids", (1, 8)), ("rot.inv_freq", (4,)),
                 ("w2.total_ops", (1,)), ("real.bias", (3,))]:
        ck[k] = TensorMeta(k, s, "float32", "cpu")
    report = compare(ck, Target("x", {}, exp))
    assert report.benign_unexpected == ["h.0.attn.bias", "h.0.attn.masked_bias",
                                        "emb.position_ids", "rot.inv_freq", "w2.total_ops"]


def test_lazy_target_has_no_shape_to_mismatch():
    target = load_target("torch.nn:LazyLinear", {"out_features": 3})
    sd = nn.Linear(5, 3).state_dict()
    assert compare(_metas(sd), target).strict_ok


def test_100k_keys_compare_fast():
    exp = {f"layers.{i}.m{j}.weight": TensorMeta(f"layers.{i}.m{j}.weight", (4, 4),
                                                 "float32", "meta")
           for i in range(1000) for j in range(100)}
    target = Target("big", {}, exp)
    ck = {("module." + k if n % 3 == 0 else k): t for n, (k, t) in enumerate(exp.items())}
    start = time.perf_counter()
    report = compare(ck, target)
    assert time.perf_counter() - start < 5
    assert len(report.missing) == len(report.unexpected) == 33334
    start = time.perf_counter()
    assert len(group_keys(report.missing)) <= 100
    diagnose(ck, target, report)
    assert time.perf_counter() - start < 15


# -- group_keys -----------------------------------------------------------------------

def test_group_keys_examples():
    keys = [f"layers.{i}.attn.q.weight" for i in range(32)]
    assert group_keys(keys) == ["layers.{0..31}.attn.q.weight"]
    assert group_keys(["b.0.w", "b.2.w", "b.5.w"]) == ["b.{0,2,5}.w"]
    assert group_keys(["b.0.w", "b.1.w"]) == ["b.{0,1}.w"]
    assert group_keys(["b.0.w", "b.1.w", "b.2.w", "b.7.w"]) == ["b.{0..2,7}.w"]
    assert group_keys(["head.weight", "head.bias", "x"]) == ["head.{weight,bias}", "x"]
    keys = [f"l.{i}.{n}" for i in range(4) for n in ("weight", "bias")] + ["fc.weight"]
    assert group_keys(keys) == ["l.{0..3}.{weight,bias}", "fc.weight"]
    assert group_keys(["x", "b.01.w", "b.1.w"]) == ["x", "b.01.w", "b.1.w"]  # 01 is no index
    assert group_keys(["a", "a", "b"]) == ["a", "b"]


def test_group_keys_limit():
    keys = [f"m{i}.w" for i in range(10)] + [f"b.{i}.x" for i in range(5)]
    assert group_keys(keys, limit=3) == ["m0.w", "m1.w", "… and 13 more"]
    assert group_keys(keys, limit=20) == group_keys(keys)


def test_expand_group():
    assert expand_group("layers.{0..2,5}.{weight,bias}") == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "layers.2.weight", "layers.2.bias", "layers.5.weight", "layers.5.bias"]
    assert expand_group("plain.key") == ["plain.key"]
    keys = [f"a.{i}.b.{j}.{n}" for i in (0, 1, 2, 3, 9) for j in (0, 2, 3, 4) for n in "xy"]
    groups = group_keys(keys)
    assert groups == ["a.{0..3,9}.b.{0,2..4}.{x,y}"]
    assert expand_group(groups[0]) == keys


_part = st.one_of(st.integers(0, 5).map(str), st.integers(0, 40).map(str),
                  st.sampled_from(["weight", "bias", "layers", "attn", "q", "01", "", "_x"]),
                  st.text("abz_019", max_size=3))
_key = st.lists(_part, min_size=1, max_size=5).map(".".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(_key, max_size=60), st.one_of(st.none(), st.integers(1, 10)))
def test_group_keys_loses_no_key(keys, limit):
    groups = group_keys(keys)
    expanded = [k for g in groups for k in expand_group(g)]
    assert sorted(expanded) == sorted(set(keys))  # every key once, nothing invented
    assert group_keys(keys) == groups  # deterministic
    limited = group_keys(keys, limit=limit)
    if limit is not None and len(groups) > limit:
        assert len(limited) == limit and limited[-1].startswith("… and ")
        shown = sum(len(expand_group(g)) for g in limited[:-1])
        assert limited[-1] == f"… and {len(set(keys)) - shown} more"
    else:
        assert limited == groups


# -- compare's list-at-a-time checks agree with a plain per-key loop ----------------------

def _reference(tensors, target, accepted=()):
    """What compare() must report, written as the obvious loop over the model's keys."""
    exp, tied = target.tensors, target.tied
    aliases: dict[str, list[str]] = {}
    for alias, first in tied.items():
        aliases.setdefault(first, []).append(alias)
    matched, missing, mism, dtypes, ok = [], [], [], [], set()
    for k, want in exp.items():
        have = tensors.get(k)
        if have is None:
            missing.append(k)
            continue
        matched.append(k)
        if tuple(have.shape) == tuple(want.shape) or (want.shape == () and have.shape == (1,)):
            ok.add(k)
        else:
            mism.append((k, tuple(have.shape), tuple(want.shape)))
        if have.dtype != want.dtype:
            dtypes.append((k, have.dtype, want.dtype))
    tied_missing = [k for k in missing if any(  # a twin that loads
        t in ok for t in ([tied[k]] if k in tied else aliases.get(k, [])))]
    total = good = 0
    for k, want in exp.items():
        if k in tied:
            continue
        n = 1
        for d in want.shape:
            n *= d
        total += n
        if k in ok or any(a in ok for a in aliases.get(k, ())):
            good += n
    return {"matched": matched, "missing": missing, "unexpected": [k for k in tensors
                                                                    if k not in exp],
            "shape_mismatch": mism, "dtype_diff": dtypes, "tied_missing": tied_missing,
            "keys_ok": len(ok) + len(tied_missing), "elements": (good, total),
            "accepted": [k for k in missing if k in set(accepted)]}


_names = st.sampled_from(["a", "b", "c", "emb", "head", "w", "0", "1"])
_shapes = st.sampled_from([(2,), (3,), (2, 3), (1,), ()])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.lists(_names, min_size=1, max_size=3).map(".".join),
                       st.tuples(_shapes, st.sampled_from(["float32", "float16"])),
                       min_size=1, max_size=8),
       st.data())
def test_compare_agrees_with_a_plain_loop(model, data):
    exp = {k: TensorMeta(k, s, d, "meta") for k, (s, d) in model.items()}
    names = list(exp)
    tied = {}
    if len(names) >= 2 and data.draw(st.booleans()):
        first, alias = data.draw(st.lists(st.sampled_from(names), min_size=2, max_size=2,
                                          unique=True))
        tied[alias] = first
        exp[alias] = exp[first]._replace(key=alias)
    target = Target("t", {}, exp, frozenset(exp), frozenset(), tied)
    ck = {}
    for k in names:
        choice = data.draw(st.sampled_from(["same", "drop", "shape", "dtype", "rename"]))
        m = exp[k]
        if choice == "drop":
            continue
        if choice == "shape":
            m = m._replace(shape=data.draw(_shapes))
        if choice == "dtype":
            m = m._replace(dtype="bfloat16")
        ck[k + ".x" if choice == "rename" else k] = m._replace(device="cpu")
    accepted = data.draw(st.lists(st.sampled_from(names), max_size=3))
    rep, ref = compare(ck, target, accepted_missing=accepted), _reference(ck, target, accepted)
    assert rep.matched == ref["matched"] and rep.missing == ref["missing"]
    assert rep.unexpected == ref["unexpected"]
    assert [(m.key, m.checkpoint_shape, m.model_shape) for m in rep.shape_mismatch] == \
        ref["shape_mismatch"]
    assert [(d.key, d.checkpoint_dtype, d.model_dtype) for d in rep.dtype_diff] == \
        ref["dtype_diff"]
    assert rep.tied_missing == ref["tied_missing"]
    assert rep.keys_ok == ref["keys_ok"] and rep.coverage_params == ref["elements"]
    assert rep.accepted_missing == ref["accepted"]


def test_filled_in_counters_count_only_where_their_module_loads():
    """torch fills a missing num_batches_tracked (old BatchNorm metadata); that makes it
    no problem, but a file whose weights all miss must not show 20/122 keys for them."""
    from pttui.core.target import load_target

    target = load_target("torchvision:resnet18")
    old = {}  # no metadata version: a file saved before BatchNorm counted batches
    plain = {k: m for k, m in target.tensors.items() if not k.endswith("num_batches_tracked")}
    fits = compare(plain, target, ckpt_metadata=old)
    assert fits.strict_ok and fits.coverage_keys == (122, 122)
    assert len(fits.auto_filled) == 20
    prefixed = {"module." + k: m for k, m in plain.items()}
    off = compare(prefixed, target, ckpt_metadata=old)
    assert off.coverage_keys == (0, 122) and off.coverage_params[0] == 0
