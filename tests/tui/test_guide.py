"""The guided fix-up's order of steps (pttui.core.guide), without the UI."""

from __future__ import annotations

import pytest

from pttui.core.guide import as_regex, next_step, preview_op
from pttui.core.reader import open_checkpoint
from pttui.core.recipe import AcceptMissing, Drop, Recipe, StripPrefix
from tests.tui.conftest import SAMPLES, SQUEEZE


@pytest.fixture(scope="module")
def squeeze():
    from pttui.core.targets import load_target

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


def test_head_mismatch_lists_what_stays_uninitialised(squeeze):
    steps, recipe = _walk(SAMPLES / "squeezenet1_1_finetuned_10cls.pt", squeeze)
    assert [s.stage for s in steps] == ["shape", "done"]
    assert steps[0].uninitialised == ["classifier.1.weight", "classifier.1.bias"]
    assert steps[-1].uninitialised == ["classifier.1.weight", "classifier.1.bias"]
    assert recipe.accepted_missing == ("classifier.1.weight", "classifier.1.bias")


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
    from pttui.core.targets import load_target

    vit = load_target(str(SAMPLES / "targets.py") + ":tiny_vit")
    steps, _ = _walk(SAMPLES / "tiny_vit_cuda.pt", vit)
    assert [s.stage for s in steps] == ["device", "done"] and steps[0].ops == []


def test_preview_op_reports_changes_and_conflicts(squeeze):
    from pttui.core.meta import ReadError
    from pttui.core.recipe import RegexRename

    ckpt = open_checkpoint(str(SAMPLES / "squeezenet1_1_dataparallel.pt"))
    changed, before, after = preview_op(ckpt, Recipe(), squeeze, RegexRename(r"^module\.", ""))
    assert len(changed) == 52 and after.strict_ok and not before.matched
    with pytest.raises(ReadError):
        preview_op(ckpt, Recipe(), squeeze, RegexRename(r"\.\d+\.", "."))
