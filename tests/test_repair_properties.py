"""Properties of the repair engine that must hold for any input:

- a recipe previewed on metadata gives exactly the keys, shapes and dtypes that
  applying it to the real tensors (export) writes, with the right values;
- a suggestion never lowers coverage.
"""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pttui.core.compare import compare
from pttui.core.export import export
from pttui.core.reader import open_checkpoint
from pttui.core.recipe import Recipe, RecipeConflict, SelectContainer
from pttui.core.suggest import suggest
from pttui.core.targets import load_target

from .test_recipe import DTYPES, keys, ops

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16, "int64": torch.int64, "bool": torch.bool}


@st.composite
def state_dicts(draw):
    names = draw(st.lists(keys, min_size=1, max_size=8, unique=True))
    out = {}
    for i, k in enumerate(names):
        dt = _TORCH_DTYPES[draw(st.sampled_from(DTYPES))]
        shape = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
        out[k] = (torch.arange(1, 1 + max(1, torch.Size(shape).numel())) + i).reshape(shape).to(dt)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sd=state_dicts(), op_list=st.lists(ops(), max_size=4))
def test_preview_equals_export(tmp_path_factory, sd, op_list):
    folder = tmp_path_factory.mktemp("prop")
    src = folder / "src.pt"
    torch.save(sd, src)
    ckpt = open_checkpoint(str(src))
    recipe = Recipe([op for op in op_list if not isinstance(op, SelectContainer)])
    try:
        preview = recipe.apply(ckpt.tensors)
    except RecipeConflict:
        return  # refused before anything is written, as a user would see it
    out = folder / "out.pt"
    export(ckpt, preview, ckpt.tensors, str(out))
    written = torch.load(out, weights_only=True)
    assert list(written) == list(preview)
    for new_key, meta in preview.items():
        t = written[new_key]
        assert tuple(t.shape) == meta.shape
        assert str(t.dtype).removeprefix("torch.") == meta.dtype
        assert torch.equal(t, sd[meta.key].to(t.dtype))


@pytest.fixture(scope="module")
def resnet_target():
    return load_target("torchvision:resnet18", {"num_classes": 10})


def _perturbed(expected, rng: random.Random):
    """A checkpoint-like key map made from the model's by the mishaps users meet."""
    tensors = dict(expected)
    if rng.random() < 0.5:
        p = rng.choice(["module.", "_orig_mod.", "model."])
        tensors = {p + k: m for k, m in tensors.items()}
    if rng.random() < 0.4:
        tensors = {k.replace("bn", "norm", 1) if rng.random() < 0.5 else k: m
                   for k, m in tensors.items()}
    for k in rng.sample(list(tensors), k=rng.randint(0, 5)):
        del tensors[k]
    head = next((k for k in tensors if k.endswith("fc.weight")), None)
    if head and rng.random() < 0.4:
        m = tensors[head]
        tensors[head] = m._replace(shape=(1000, m.shape[1]))
    return tensors


@pytest.mark.parametrize("seed", range(25))
def test_suggestions_never_lower_coverage(resnet_target, seed):
    rng = random.Random(seed)
    tensors = _perturbed(resnet_target.tensors, rng)
    before = compare(tensors, resnet_target)
    for s in suggest(tensors, resnet_target):
        assert s.after.coverage_params[0] >= before.coverage_params[0], s.title
        assert s.after.coverage_keys[0] >= before.coverage_keys[0], s.title
        after_map = tensors
        for op in s.ops:
            after_map = op.apply(after_map)
        again = compare(after_map, resnet_target,
                        accepted_missing=s.after.accepted_missing)
        assert again.coverage_keys == s.after.coverage_keys  # the effect shown is real


def test_compare_and_suggest_scale(tmp_path):
    """100,000 keys with a wrapper prefix: compare + suggestions stay interactive."""
    import time

    from pttui.core.meta import TensorMeta
    from pttui.core.targets import Target

    expected = {f"layers.{i // 10}.mlp.{i % 10}.weight":
                TensorMeta(f"layers.{i // 10}.mlp.{i % 10}.weight", (4, 4), "float32", "meta")
                for i in range(100_000)}
    target = Target("synthetic", {}, expected, frozenset(expected), frozenset(), {}, None,
                    "model", "synthetic")
    tensors = {"module." + k: m for k, m in expected.items()}
    start = time.perf_counter()
    steps = suggest(tensors, target)
    elapsed = time.perf_counter() - start
    assert steps[0].title == "strip prefix `module.`"
    assert steps[0].after.strict_ok
    assert elapsed < 10  # generous for a loaded CI machine; benchmarks/ holds the real figure
