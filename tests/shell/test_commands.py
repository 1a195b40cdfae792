"""Every command against the real samples, in process: the repair flow end to end, the
bookkeeping around it (undo, stale suggestions, recipes), and one-line errors."""

from __future__ import annotations

import json
import os
import threading

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from pttui.commands import Context, run_line
from pttui.commands import registry
from pttui.core.target import load_target

from tests.helpers import SAMPLES

DP = SAMPLES / "squeezenet1_1_dataparallel.pt"
CLEAN = SAMPLES / "squeezenet1_1.pt"


@pytest.fixture(scope="module")
def squeeze():
    return load_target("torchvision:squeezenet1_1")


def session(path=DP, target=None) -> Context:
    ctx = Context()
    assert ok(ctx, f"open {path}")
    if target is not None:
        ctx.session.set_target(target)
    return ctx


def ok(ctx, line):
    r = run_line(ctx, line)
    assert r.status == "ok", r.title
    return r


def fails(ctx, line, *words):
    r = run_line(ctx, line)
    assert r.status == "error", r.plain()
    assert "\n" not in r.title and "Traceback" not in r.title
    for w in words:
        assert w in r.title, r.title
    return r


def test_repair_flow_exports_weights_the_real_model_loads(tmp_path):
    ctx = session()
    r = ok(ctx, "model torchvision:squeezenet1_1")
    assert r.changed and r.data["keys"] == 52 and r.data["report"]["strict_ok"] is False
    r = ok(ctx, "check")
    assert r.data["strict_ok"] is False and len(r.data["missing"]) == 52
    assert "strip prefix `module.`" in r.plain()
    r = ok(ctx, "suggest")
    assert r.data["suggestions"][0]["title"] == "strip prefix `module.`"
    r = ok(ctx, "apply 1")
    assert r.data["report"]["strict_ok"] is True
    assert ok(ctx, "check --assert").data["strict_ok"] is True
    out = tmp_path / "fixed.pt"
    r = ok(ctx, f"export {out}")
    assert r.data["verified"] and r.data["tensors"] == 52
    model = torchvision.models.squeezenet1_1(weights=None)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    recipe = json.loads((tmp_path / "fixed.pt.recipe.json").read_text())
    assert recipe["target"] == "torchvision:squeezenet1_1"
    assert recipe["ops"] == [{"op": "strip_prefix", "prefix": "module."}]
    ref = torch.load(CLEAN, weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_undo_redo_and_stale_suggestions(squeeze):
    ctx = session(target=squeeze)
    fails(ctx, "apply 1", "run `suggest` first")
    ok(ctx, "suggest")
    fails(ctx, "apply 9", "choose 1..1")
    fails(ctx, "apply x", "not a suggestion number")
    ok(ctx, "apply 1")
    fails(ctx, "apply 1", "changed since", "run `suggest` again")
    r = ok(ctx, "undo")
    assert "- strip prefix `module.`" in r.plain() and not ctx.session.report.strict_ok
    assert ok(ctx, "undo").title == "nothing to undo"
    r = ok(ctx, "redo")
    assert "+ strip prefix" in r.plain() and ctx.session.report.strict_ok
    assert ok(ctx, "redo").title == "nothing to redo"


def test_hand_steps_rename_drop_accept(squeeze):
    ctx = session(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", squeeze)
    r = ok(ctx, "check")
    assert [m["key"] for m in r.data["shape_mismatch"]] == ["classifier.1.weight",
                                                           "classifier.1.bias"]
    fails(ctx, "check --assert", "would not load")
    r = ok(ctx, "drop classifier.1")  # a module name drops what is below it
    assert r.title == "step 1: drop `classifier.1.*`" and "dropped 2 keys" in r.plain()
    fails(ctx, "drop nothing.here", "matches no key")
    fails(ctx, "accept-missing 'features.*'", "none of the missing keys match")
    r = ok(ctx, "accept-missing classifier.1")
    assert r.data["report"]["ok_with_accepted"] and not r.data["report"]["strict_ok"]
    fails(ctx, "accept-missing", "already accepted")
    r = ok(ctx, "rename '^features\\.0\\.' stem.")
    assert "renamed 2 keys, e.g. features.0.weight -> stem.weight" in r.plain()
    ok(ctx, "rename --exact stem.weight features.0.weight")
    fails(ctx, "rename --exact stem.bias features.3.squeeze.bias", "would both become")
    fails(ctx, "rename '(' x", "invalid regex")
    assert len(ctx.session.recipe.ops) == 4


def test_containers_and_select(squeeze):
    ctx = session(SAMPLES / "tiny_vit_training_state.pt")
    r = ok(ctx, "containers")
    assert [c["path"] for c in r.data["containers"]] == [["model"], ["model_ema"],
                                                         ["optimizer", "state"]]
    assert r.data["containers"][0]["selected"]
    r = ok(ctx, "select model_ema")
    assert ctx.session.recipe.container == ("model_ema",)
    assert ok(ctx, "containers").data["containers"][1]["selected"]
    fails(ctx, "select nope", "no container `nope`", "`model_ema`")
    fails(Context(), "select model", "no checkpoint is open", "open PATH")


def test_model_picks_the_container_that_fits(tmp_path):
    path = tmp_path / "two.pt"
    torch.save({"state_dict": {"big.weight": torch.zeros(30, 30)}, "epoch": 3,
                "model_ema": load_file(SAMPLES / "tiny_vit.safetensors")}, path)
    ctx = session(path)
    assert ctx.session.source.selected == ("state_dict",)
    r = ok(ctx, f"model {SAMPLES}/targets.py:tiny_vit")
    assert ctx.session.recipe.container == ("model_ema",) and ctx.session.report.strict_ok
    assert "using container `model_ema`" in r.plain()
    ok(ctx, "undo")
    assert ctx.session.recipe.container is None
    fails(ctx, "model torchvision:squeezenet_9", "unknown torchvision model")
    fails(ctx, "model squeezenet1_1", "did you mean torchvision:squeezenet1_1")
    fails(ctx, "model torchvision:squeezenet1_1 num_classes", "expected KEY=VALUE")


def test_looking_around():
    ctx = session()
    r = ok(ctx, "ls module.features.3 --limit 2")
    assert r.data["keys"][:2] == ["module.features.3.squeeze.weight",
                                  "module.features.3.squeeze.bias"]
    assert len(r.data["keys"]) == 6 and "… and 4 more" in r.plain()
    fails(ctx, "ls nowhere", "no key starts with `nowhere`")
    assert len(ok(ctx, "find EXPAND3").data["keys"]) == 16
    assert ok(ctx, "find '*.0.bias'").data["keys"] == ["module.features.0.bias"]
    text = ok(ctx, "tree --depth 3").plain()
    assert "features" in text and "expand3x3" not in text
    assert "squeeze  [16, 64, 1, 1]" not in text
    assert "weight  [16, 64, 1, 1] float32" in ok(ctx, "tree module.features.3").plain()
    r = ok(ctx, "info module.features.0.weight")
    assert r.data["shape"] == [64, 3, 3, 3] and "record 0" in r.plain()
    fails(ctx, "info module.features", "is a module holding 50 tensors")
    fails(ctx, "info module.features.0.weigth", "did you mean `module.features.0.weight`")
    ok(ctx, "rename ^module\\. ''")
    fails(ctx, "info module.features.0.weight", "is called `features.0.weight`")
    assert ok(ctx, "ls --raw --limit 1").data["keys"][0] == "module.features.0.weight"
    st = ok(ctx, "status").data
    assert st["file"] == str(DP) and st["recipe"] == 1 and st["target"] is None


def test_stats_match_torch():
    ctx = session(CLEAN)
    r = ok(ctx, "stats features.0.weight")
    t = torch.load(CLEAN, weights_only=True)["features.0.weight"].double()
    assert r.data["min"] == pytest.approx(t.min().item())
    assert r.data["max"] == pytest.approx(t.max().item())
    assert r.data["mean"] == pytest.approx(t.mean().item())
    assert r.data["std"] == pytest.approx(t.std().item())
    assert r.data["nan"] == r.data["inf"] == 0


def test_stats_count_nan_and_inf(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"w": torch.tensor([1.0, float("nan"), 3.0, float("inf"), -2.0, 0.0])}, path)
    r = ok(session(path), "stats w")
    assert (r.data["nan"], r.data["inf"], r.data["zeros"]) == (1, 1, 1)
    assert (r.data["min"], r.data["max"]) == (-2.0, 3.0)
    assert "has NaN or Inf values" in r.title


def test_recipe_save_load_show_remove(tmp_path, squeeze):
    ctx = session(target=squeeze)
    ok(ctx, "rename ^module\\. ''")
    ok(ctx, "drop 'classifier.*'")
    path = tmp_path / "r.json"
    r = ok(ctx, f"recipe save {path}")
    assert "replay: pttui fix " in r.plain() and "--model torchvision:squeezenet1_1" in r.plain()
    fails(ctx, f"recipe save {path}", "exists", "--force")
    ok(ctx, f"recipe save {path} --force")
    assert "revise_keys" in ok(ctx, "recipe show --as mmengine").plain()
    assert "key_mapping" in ok(ctx, "recipe show --as hf").plain()
    assert "load_state_dict" in ok(ctx, "recipe show --as python").plain()
    assert json.loads(ok(ctx, "recipe show --as json").plain())["ops"][1]["op"] == "drop"
    r = ok(ctx, "recipe remove 2")
    assert r.title == "removed step 2: drop `classifier.*`" and ctx.session.report.strict_ok
    fails(ctx, "recipe remove 5", "choose 1..1")
    fails(ctx, "recipe save", "needs a file")
    fresh = session(target=squeeze)
    r = ok(fresh, f"recipe load {path}")
    assert len(fresh.session.recipe.ops) == 2 and "2. drop" in r.plain()
    assert ok(fresh, "recipe").data["recipe"]["ops"][0]["op"] == "regex_rename"
    fails(fresh, f"recipe load {tmp_path / 'none.json'}", "no such recipe file")


def test_export_refusals_and_formats(tmp_path, squeeze):
    ctx = session(target=squeeze)
    fails(ctx, f"export {tmp_path / 'x.pt'}", "would still not load", "--anyway")
    ok(ctx, "rename ^module\\. ''")
    fails(ctx, f"export {DP}", "is the source checkpoint")
    fails(ctx, f"export {tmp_path / 'x.zip'}", "cannot tell the format")
    out = tmp_path / "x.safetensors"
    ok(ctx, f"export {out} --no-recipe")
    assert not (tmp_path / "x.safetensors.recipe.json").exists()
    torchvision.models.squeezenet1_1(weights=None).load_state_dict(load_file(out))
    fails(ctx, f"export {out}", "already exists")
    ok(ctx, f"export {out} --force")
    # --format decides for a name that says nothing; a name that says another format is
    # refused (a .pt holding safetensors bytes fools every tool that trusts the suffix)
    ok(ctx, f"export {tmp_path / 'y.weights'} --format safetensors")
    assert load_file(tmp_path / "y.weights").keys() == load_file(out).keys()
    for name, fmt, fixed in (("z.pt", "safetensors", "z.safetensors"),
                             ("z.bin", "safetensors", "z.safetensors"),
                             ("z.safetensors", "pt", "z.pt")):
        fails(ctx, f"export {tmp_path / name} --format {fmt}", f"ends in .{name.split('.')[1]}",
              f"name it {tmp_path / fixed}")
        assert not (tmp_path / name).exists()
    ok(ctx, f"export {tmp_path / 'z.pth'} --format pt")  # a name that agrees is fine


def test_export_reports_progress_and_stops_when_cancelled(tmp_path, squeeze):
    ctx = session(target=squeeze)
    ok(ctx, "rename ^module\\. ''")
    seen = []
    r = run_line(ctx, f"export {tmp_path / 'a.pt'}", progress=lambda *p: seen.append(p))
    assert r.ok and seen[-1] == (52, 52, "export")
    cancel = threading.Event()
    cancel.set()
    r = run_line(ctx, f"export {tmp_path / 'b.pt'}", cancel=cancel)
    assert r.status == "cancelled" and "\n" not in r.title
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "a.pt.recipe.json"]


def test_diff_against_the_clean_file():
    ctx = session()
    r = ok(ctx, f"diff {CLEAN}")
    assert r.data["same"] is False and len(r.data["only_in_a"]) == 52
    ok(ctx, "rename ^module\\. ''")
    r = ok(ctx, f"diff {CLEAN} --values")
    assert r.data["same"] and r.data["values"]["identical"] == 52
    fails(ctx, "diff nowhere.pt", "nowhere.pt")


def test_load_failure_names_the_fix(no_cuda):
    ctx = session(SAMPLES / "tiny_vit_cuda.pt")
    r = fails(ctx, "load --map-location keep", "device_unavailable")
    assert "try: load --map-location cpu" in r.plain()
    fails(ctx, "load --map-location gpu", "map_location 'gpu' is not one of")
    fails(ctx, "load --allow notdotted", "must be a dotted")


def test_load_success_is_summarised(monkeypatch):
    import pttui.core.load.attempt as loading

    def fake(path, policy, **kw):
        return loading.LoadResult(True, str(path), "torch-zip", policy.to_json(), summary={
            "type": "collections.OrderedDict", "tensor_count": 1, "tensor_bytes": 8,
            "tensors": [{"key": "w", "shape": [2], "dtype": "float32", "device": "cpu"}]})

    monkeypatch.setattr(loading, "attempt_load", fake)
    r = ok(session(CLEAN), "load --map-location cpu")
    assert r.title.startswith("loaded with torch.load") and "OrderedDict" in r.plain()


def test_devices_say_where_the_file_fits():
    r = ok(session(), "devices")
    assert r.data["cpu"]["cores"] and r.data["ram"]["available"] > 0
    plan = r.data["plan"]
    assert 4 * 2**20 < plan["bytes"] < 5 * 2**20 and plan["fits"]
    assert "plan: 4.7 MiB (as stored): fits" in r.plain() and "torch.load(path, " in r.plain()
    assert plan["cast"]["dtype"] == "bfloat16" and plan["cast"]["bytes"] < plan["bytes"]


def test_help_and_quit():
    ctx = Context()
    assert "accept-missing" in ok(ctx, "help").data["commands"]
    r = ok(ctx, "help export")
    assert r.title == "export PATH [--format FMT] [--force] [--no-recipe] [--anyway]"
    assert "--anyway" in r.plain() and "e.g.  export fixed.safetensors" in r.plain()
    fails(ctx, "help nothing", "no command `nothing`")
    assert ok(ctx, "quit").quit and ok(ctx, "exit").quit


@pytest.mark.parametrize("line, words", [
    ("open /no/such.pt", ["/no/such.pt"]),
    (f"open {SAMPLES / 'truncated.pt'}", ["truncated.pt"]),
    ("check", ["no checkpoint is open"]),
    ("ls", ["no checkpoint is open"]),
    ("stats x", ["no checkpoint is open"]),
    ("export out.pt", ["no checkpoint is open"]),
    ("model ''", ["empty model spec"]),
    ("rename a", ["missing REPLACEMENT"]),
])
def test_errors_are_one_line(line, words):
    fails(Context(), line, *words)


def test_check_needs_a_model():
    fails(session(), "check", "no model is set", "model SPEC")
    fails(session(), "suggest", "no model is set")


def test_an_unexpected_exception_is_one_line(monkeypatch):
    def boom(call):
        raise KeyError("oops")

    monkeypatch.setitem(registry.HANDLERS, "status", boom)
    r = fails(Context(), "status", "status: internal error: KeyError", "please report it")
    assert "Traceback" in r.data["traceback"]


# -- error lines that say what to do ----------------------------------------------------------

def test_paths_with_nothing_to_read():
    ctx = Context()
    fails(ctx, "open ''", "open: needs a path to a checkpoint (open PATH")
    r = fails(ctx, "open /dev/zero", "/dev/zero: a character device, not a regular file")
    assert "empty" not in r.title
    ctx = session()
    fails(ctx, "diff /dev/null", "/dev/null: a character device")
    fails(ctx, "diff ''", "diff: needs a path")
    assert ctx.session.source.path == str(DP)  # a failed open keeps the open file


def test_model_argument_mistakes(squeeze):
    ctx = session(SAMPLES / "squeezenet1_1_finetuned_10cls.pt")
    fails(ctx, "model torchvision:squeezenet1_1 weights=DEFAULT", "`weights` cannot be set",
          "weights=None")
    fails(ctx, "model torchvision:squeezenet1_1 num_classes=abc",
          "num_classes=abc is not a Python literal", "the string 'abc'")
    fails(ctx, "model torchvision:squeezenet1_1 num_classes=10 num_classes=5",
          "num_classes is given twice")
    assert ctx.session.target is None  # nothing was set by any of them
    fails(ctx, "model ref:nope/missing.pt", "the reference checkpoint nope/missing.pt")
    ok(ctx, "model torchvision:squeezenet1_1 num_classes=10")
    assert ctx.session.report.strict_ok


def test_recipe_load_of_something_else(tmp_path, squeeze):
    ctx = session(target=squeeze)
    ok(ctx, "rename ^module\\. ''")
    out = tmp_path / "sq_fixed.pt"
    ok(ctx, f"export {out}")
    r = fails(ctx, f"recipe load {out}", "not a recipe JSON file",
              "looks like a checkpoint (torch-zip)", f"recipe load {out}.recipe.json")
    assert "codec" not in r.title
    ok(ctx, f"recipe load {out}.recipe.json")  # the advice works
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 4)
    fails(ctx, f"recipe load {tmp_path / 'noise.bin'}", "holds binary data")
    fails(ctx, f"recipe load {tmp_path}", "is a folder")
    fails(ctx, "recipe load /dev/zero", "character device")
    (tmp_path / "bad.json").write_text("{")
    fails(ctx, f"recipe load {tmp_path / 'bad.json'}", "not valid JSON")  # core's words stay


def test_select_the_container_in_use_changes_nothing():
    ctx = session(SAMPLES / "tiny_vit_training_state.pt")
    r = ok(ctx, "select model")
    assert r.title == "already using container `model`; nothing changed" and not r.changed
    assert ctx.session.recipe.ops == [] and not ctx.session.can_undo
    ok(ctx, "select model_ema")
    assert len(ctx.session.recipe.ops) == 1
    assert ok(ctx, "select model_ema").title.startswith("already using")
    assert len(ctx.session.recipe.ops) == 1
    ok(ctx, "select model")  # back to the first: a real change (it replaces the step)
    assert ctx.session.recipe.container == ("model",)
    ok(ctx, "undo")
    assert ctx.session.recipe.container == ("model_ema",)


def test_tree_depth_zero_is_all_levels():
    ctx = session()
    assert ok(ctx, "tree --depth 0").plain() == ok(ctx, "tree").plain()
    assert "(default, or 0: all)" in ok(ctx, "help tree").plain()


def test_load_on_a_sharded_index_says_what_to_do_in_the_shell():
    index = SAMPLES / "tiny_vit_sharded" / "model.safetensors.index.json"
    ctx = session(index)
    r = fails(ctx, "load", "index of a sharded set (2 shard files)",
              f"`open {index.parent / 'model-00001-of-00002.safetensors'}`, then `load`")
    assert "pttui inspect" not in r.title
    shard = index.parent / "model-00001-of-00002.safetensors"
    ok(ctx, f"open {shard}")
    assert ok(ctx, "load --map-location cpu").title.startswith("loaded with torch.load")


def test_apply_builds_the_model_with_the_files_class_count(squeeze):
    ctx = session(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", squeeze)
    res = run_line(ctx, "check")
    assert "build the model with num_classes=10" in res.plain(200)
    ok(ctx, "apply 1")
    assert ctx.session.target.args == {"num_classes": 10}
    assert ctx.session.report.strict_ok
