"""``inspect --json`` streams its output: it must equal ``json.dumps(ckpt.to_json())``."""

from __future__ import annotations

import json

import pytest

from pttui.clicmds.inspect import json_pieces
from pttui.core.base.meta import Checkpoint, Container, TensorMeta
from pttui.core.read.reader import open_checkpoint

from tests.helpers import SAMPLES

CASES = ["tiny_vit.safetensors", "tiny_vit_cuda.pt", "tiny_vit_legacy.pt", "tiny_vit_dcp",
         "tiny_vit_training_state.pt", "malicious.pt", "tinynet_whole_model.pt",
         "tiny_vit_sharded/model.safetensors.index.json"]


def dumps(ckpt):
    return json.dumps(ckpt.to_json(), separators=(",", ":"))


@pytest.mark.parametrize("name", CASES)
def test_same_text_as_to_json(name):
    ckpt = open_checkpoint(str(SAMPLES / name))
    assert "".join(json_pieces(ckpt)) == dumps(ckpt)


def test_odd_names_and_values_and_chunks():
    odd = ["é\u2028\"quote\"\\", "\x00nul", "pttui-tensors-x", "\ud800lone"]
    tensors = {k: TensorMeta(k, (2, 0, 3), "bfloat16", "cuda:1") for k in odd}
    tensors["bool-shape"] = TensorMeta("bool-shape", (True, 2), "float32", "cpu")
    tensors["weird-dtype"] = TensorMeta("weird-dtype", (), "unknown", "dev\"ice")
    ckpt = Checkpoint("x.pt", "torch-zip", [Container(("a\u2028",), tensors)], ("a\u2028",),
                      other={"pttui-tensors-x": "[]"})
    assert "".join(json_pieces(ckpt, chunk=2)) == dumps(ckpt)
    empty = Checkpoint("e.pt", "torch-zip", [], None)
    assert "".join(json_pieces(empty)) == dumps(empty)
