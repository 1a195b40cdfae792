"""The key tree's paging, filter and status marks (pttui.core.read.keyfilter), no Textual."""

from __future__ import annotations

import json
import struct

import pytest

from pttui.core.read import keyfilter as kf
from pttui.core.compare.strict import compare
from pttui.core.base.meta import TensorMeta
from pttui.core.read.reader import open_checkpoint


def _t(key, shape=(4,)):
    return TensorMeta(key, tuple(shape), "float32", "cpu")


def _tensors(keys):
    return {k: _t(k) for k in keys}


def test_rows_collapse_equal_blocks_and_split_them_under_a_filter():
    keys = [f"layers.{i}.{p}" for i in range(8) for p in ("w", "b")] + ["head.w"]
    idx = kf.build_index(_tensors(keys))
    (layers, head) = list(kf.rows(idx, idx.root))
    assert layers.label == "layers" and layers.count == 16
    (run,) = list(kf.rows(idx, layers.node))
    assert run.label == "{0..7}" and run.repeat == 8 and run.count == 16
    assert len(run.paths) == 8 and kf.row_keys(idx, run)[:2] == ["layers.0.b", "layers.0.w"]
    matched = kf.matching(idx, kf.KeyFilter("layers.3."))
    assert matched == ["layers.3.b", "layers.3.w"]
    (three,) = list(kf.rows(idx, idx.root, matched))  # one matching child: folded
    assert three.label == "layers.3" and three.count == 2
    assert [r.label for r in kf.rows(idx, three.node, matched)] == ["w", "b"]


def test_a_big_filtered_group_lists_children_from_the_matches():
    keys = [f"w{i:05d}" for i in range(5000)] + ["w-x.a", "w.a", "w.b"]
    idx = kf.build_index(_tensors(keys))
    matched = kf.matching(idx, kf.KeyFilter("w"))
    labels = [r.label for r in kf.rows(idx, idx.root, matched)]
    assert len(labels) == 5002 and labels.count("w") == 1 and "w-x.a" in labels
    assert next(r for r in kf.rows(idx, idx.root, matched) if r.label == "w").count == 2


def test_glob_and_case_blind_substring():
    idx = kf.build_index(_tensors(["a.Weight", "a.bias", "b.weight"]))
    assert kf.matching(idx, kf.KeyFilter("WEIGHT")) == ["a.Weight", "b.weight"]
    assert kf.matching(idx, kf.KeyFilter("*.bias")) == ["a.bias"]
    assert kf.matching(idx, kf.KeyFilter("")) is None
    prev = (kf.KeyFilter("weig"), kf.matching(idx, kf.KeyFilter("weig")))
    assert kf.matching(idx, kf.KeyFilter("weight"), prev) == ["a.Weight", "b.weight"]


def test_keys_with_brackets_are_plain_labels():
    idx = kf.build_index(_tensors(["w[0]", "x.[bold]y"]))
    rows = list(kf.rows(idx, idx.root))
    assert [r.label for r in rows] == ["w[0]", "x.[bold]y"]
    from pttui.tui.render import key_row

    assert key_row(rows[1], {}, False).plain.startswith("x.[bold]y  [4] float32")


class _Target:
    def __init__(self, tensors):
        self.tensors, self.tied, self.non_persistent, self.auto_fill = tensors, {}, (), ()


def test_missing_keys_sit_in_model_order_with_status():
    model = {k: _t(k) for k in ("conv.w", "conv.b", "fc.w", "fc.b")}
    model["fc.w"] = _t("fc.w", (10, 4))
    have = {"conv.w": _t("conv.w"), "fc.w": _t("fc.w", (3, 4)), "extra": _t("extra")}
    target = _Target(model)
    report = compare(have, target)
    idx = kf.build_index(have, report, target)
    assert list(idx.root.children) == ["conv", "fc", "extra"]
    assert idx.status == {"conv.w": "ok", "conv.b": "missing", "fc.w": "shape",
                          "fc.b": "missing", "extra": "unexpected"}
    conv, fc, extra = kf.rows(idx, idx.root)
    assert conv.status == "missing" and conv.counts == {"missing": 1, "ok": 1}
    assert fc.status == "shape" and extra.status == "unexpected"
    assert idx.model_shape["fc.w"] == (10, 4)
    assert kf.row_keys(idx, fc, "missing") == ["fc.b"]


def write_safetensors(path, n_layers=1000, per=25):
    """100,000 tiny float32 tensors under ``model.layers.N.blocks.M.*``."""
    header, off = {}, 0
    for i in range(n_layers):
        for j in range(per):
            for name in ("attn.q.weight", "attn.q.bias", "mlp.fc1.weight", "norm.weight"):
                header[f"model.layers.{i}.blocks.{j}.{name}"] = {
                    "dtype": "F32", "shape": [4], "data_offsets": [off, off + 16]}
                off += 16
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"\0" * off)
    return len(header)


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "k100.safetensors"
    assert write_safetensors(path) == 100_000
    return kf.build_index(open_checkpoint(str(path)).tensors)


def test_100k_keys_filter_and_rows(big_index):
    """What a filter over 100,000 keys shows (its speed is in benchmarks/bench_tui.py)."""
    idx = big_index
    matched = kf.matching(idx, kf.KeyFilter("fc1"))
    rows = list(kf.rows(idx, idx.root, matched))
    assert len(matched) == 25_000 and rows[0].count == 25_000
    assert rows[0].label == "model.layers"
    first = list(kf.rows(idx, rows[0].node, matched))
    assert first[0].repeat == 1000  # equal blocks stay one row under the filter
    assert first[0].label == "{0..999}.blocks"


def test_drop_pattern_and_rename_seed_cover_exactly_the_row():
    import re

    keys = [f"layers.{i}.{p}" for i in range(3) for p in ("w", "b")] + ["layers_x.w", "head.w"]
    idx = kf.build_index(_tensors(keys))
    layers = next(kf.rows(idx, idx.root))
    (run,) = list(kf.rows(idx, layers.node))
    rx = re.compile(kf.drop_pattern(run))
    assert sorted(k for k in keys if rx.search(k)) == sorted(keys[:6])
    leaf = next(r for r in kf.rows(idx, idx.root) if r.key == "head.w")
    assert [k for k in keys if re.search(kf.drop_pattern(leaf), k)] == ["head.w"]
    pattern, repl = kf.rename_seed(layers)
    assert re.sub(pattern, "blocks", "layers.0.w") == "blocks.0.w"
    assert re.sub(pattern, "blocks", "layers_x.w") == "layers_x.w" and repl == "layers"
