"""The guided fix-up's order of steps (pttui.core.repair.guide), without the UI."""

from __future__ import annotations

import pytest

from pttui.core.repair.guide import as_regex, next_step, preview_op
from pttui.core.read.reader import open_checkpoint
from pttui.core.recipe.recipe import AcceptMissing, Drop, Recipe, StripPrefix
from tests.tui.conftest import SAMPLES, SQUEEZE


@pytest.fixture(scope="module")
def squeeze():
    from pttui.core.target import load_target

    return load_target(SQUEEZE)


def _walk(path, target, answer="accept"):
    ckpt, recipe, seen, steps = open_checkpoint(str(path)), Recipe(), set(), []
    for _ in range(12):
        step = next_step(ckpt, recipe, target, seen)
        steps.append(step)
        if step.stage in ("done", "stuck"):
            break
        seen.add(step.ident)
        if answer == "accept":
            for op in step.ops:
                recipe = recipe.with_op(op)
    return steps, recipe


def test_dataparallel_strips_the_wrapper_then_fits(squeeze):
    steps, recipe = _walk(SAMPLES / "squeezenet1_1_dataparallel.pt", squeeze)
    assert [s.stage for s in steps] == ["prefix", "done"]
    assert steps[0].ops == [StripPrefix("module.")] and steps[0].editable == "rename"
    assert steps[0].before.coverage_keys == (0, 52) and steps[0].after.coverage_keys == (52, 52)
    assert as_regex(steps[0].ops[0]) == (r"^module\.", "")
    assert steps[-1].uninitialised == []


def test_head_mismatch_drops_then_acknowledges_in_a_step_of_its_own(squeeze):
    """num_classes first (skipped here: no ops), then the drop alone, then strict=False."""
    steps, recipe = _walk(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", squeeze)
    assert [s.stage for s in steps] == ["classes", "shape", "accept", "done"]
    drop = steps[1]
    assert [type(op).__name__ for op in drop.ops] == ["Drop"] and not drop.uninitialised
    assert drop.leaves_missing == ["classifier.1.weight", "classifier.1.bias"]
    assert drop.after.missing == ["classifier.1.weight", "classifier.1.bias"]
    assert not drop.after.ok_with_accepted  # dropping accepts nothing by itself
    ack = steps[2]
    assert ack.ops == [AcceptMissing(("classifier.1.weight", "classifier.1.bias"))]
    assert ack.uninitialised == ["classifier.1.weight", "classifier.1.bias"]
    assert ack.title == "strict=False: leave 2 model keys uninitialised"
    assert ack.after.ok_with_accepted
    assert steps[-1].uninitialised == ["classifier.1.weight", "classifier.1.bias"]
    assert "fits the model" not in steps[-1].title
    assert recipe.accepted_missing == ("classifier.1.weight", "classifier.1.bias")


def test_head_mismatch_first_offers_the_model_with_the_files_class_count(squeeze):
    from pttui.core.compare.strict import compare
    from pttui.core.repair.guide import head_classes

    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1_finetuned_10cls.pt"))
    assert head_classes(compare(ckpt.tensors, squeeze)) == (10, 1000)
    step = next_step(ckpt, Recipe(), squeeze, set())
    assert step.stage == "classes" and step.ops == [] and step.editable is None
    assert step.title == "build the model with num_classes=10"
    assert step.target.spec == SQUEEZE and step.target.args == {"num_classes": 10}
    assert step.before.coverage_keys == (50, 52) and step.after.strict_ok
    # with that model, nothing is left to do
    assert next_step(ckpt, Recipe(), step.target, {step.ident}).stage == "done"
    # a file whose keys do not line up yet has no class count to offer
    dp = open_checkpoint(str(SAMPLES / "squeezenet1_1_dataparallel.pt"))
    assert head_classes(compare(dp.tensors, squeeze)) is None


def test_rename_seed_consumes_the_dot_so_an_empty_replacement_removes_the_prefix():
    import re

    from pttui.core.repair.guide import rename_seed
    from pttui.core.read.keyfilter import build_index, rows

    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1_compiled.pt"))
    idx = build_index(ckpt.tensors)
    group = next(r for r in rows(idx, idx.root, None) if r.key == "_orig_mod")
    pattern, repl = rename_seed(group)
    assert (pattern, repl) == (r"^_orig_mod\.", "_orig_mod.")
    key = "_orig_mod.features.0.weight"
    assert re.sub(pattern, repl, key) == key  # as seeded: changes nothing
    assert re.sub(pattern, "", key) == "features.0.weight"  # "empty removes"
    head = next(r for r in rows(idx, group.node, None) if r.key == "_orig_mod.classifier.1")
    leaf = next(r for r in rows(idx, head.node, None) if r.is_leaf)
    assert rename_seed(leaf) == ("^" + re.escape(leaf.key) + "$", leaf.key)  # the whole key


def test_torchscript_and_dcp_get_their_loader_not_allow_listing(squeeze):
    from pttui.core.repair.guide import format_advice

    ts = open_checkpoint(str(SAMPLES / "tiny_vit_torchscript.pt"))
    dcp = open_checkpoint(str(SAMPLES / "tiny_vit_dcp"))
    assert "torch.jit.load" in format_advice(ts)
    assert "torch.distributed.checkpoint.load" in format_advice(dcp)
    assert format_advice(open_checkpoint(str(SAMPLES / "tiny_vit_training_state.pt"))) is None
    from pttui.core.target import load_target

    tiny = load_target(f"{SAMPLES}/targets.py:tiny_vit")  # the model the archive is of
    step = next_step(ts, Recipe(), tiny, set())
    assert step.stage == "globals" and "TorchScript" in step.title
    assert "torch.jit.load" in step.why and "will not load" not in step.title


def test_leftover_missing_keys_end_in_an_acknowledgement(squeeze):
    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1.pt"))
    recipe = Recipe([Drop("classifier.*")])  # a headless checkpoint
    seen: set[str] = set()
    step = next_step(ckpt, recipe, squeeze, seen)
    while step.stage != "accept":
        seen.add(step.ident)
        step = next_step(ckpt, recipe, squeeze, seen)
    assert step.ops == [AcceptMissing(("classifier.1.weight", "classifier.1.bias"))]
    assert step.after.ok_with_accepted


def test_skipping_everything_ends_stuck_and_info_steps_change_nothing(squeeze):
    steps, recipe = _walk(SAMPLES / "squeezenet1_1_dataparallel.pt", squeeze, answer="skip")
    assert steps[-1].stage == "stuck" and not recipe.ops
    from pttui.core.target import load_target

    vit = load_target(str(SAMPLES / "targets.py") + ":tiny_vit")
    steps, _ = _walk(SAMPLES / "tiny_vit_cuda.pt", vit)
    assert [s.stage for s in steps] == ["device", "done"] and steps[0].ops == []


def test_preview_op_reports_changes_and_conflicts(squeeze):
    from pttui.core.base.meta import ReadError
    from pttui.core.recipe.recipe import RegexRename

    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1_dataparallel.pt"))
    changed, before, after = preview_op(ckpt, Recipe(), squeeze, RegexRename(r"^module\.", ""))
    assert len(changed) == 52 and after.strict_ok and not before.matched
    with pytest.raises(ReadError):
        preview_op(ckpt, Recipe(), squeeze, RegexRename(r"\.\d+\.", "."))


def test_skipping_the_strict_false_step_does_not_ask_it_again(squeeze):
    """Accept the drop, skip the acknowledgement: the next step is not the same question
    (the missing head and "all missing keys" would both ask it)."""
    ckpt, recipe, seen = open_checkpoint(str(SAMPLES / "squeezenet1_1_finetuned_10cls.pt")), \
        Recipe(), set()
    titles = []
    for _ in range(8):
        step = next_step(ckpt, recipe, squeeze, seen)
        titles.append(step.title)
        if step.stage in ("done", "stuck"):
            break
        seen.add(step.ident)
        if step.stage == "shape":
            for op in step.ops:
                recipe = recipe.with_op(op)
    acks = [t for t in titles if t.startswith("strict=False")]
    assert acks == ["strict=False: leave 2 model keys uninitialised"], titles
