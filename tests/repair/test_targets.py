"""Targets built from real torchvision models, sample files and user code: what they
expect is exactly what the model's own state_dict() holds."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

from pttui.core.base.meta import ReadError
from pttui.core.target import load_target, parse_model_args, torchvision_models

from tests.helpers import SAMPLES


def _write(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def _one_line_error(spec: str, args: dict | None = None) -> str:
    with pytest.raises(ReadError) as err:
        load_target(spec, args)
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# -- parse_model_args -----------------------------------------------------------------

def test_parse_model_args_literals():
    got = parse_model_args(["num_classes=10", "dropout=0.2", "sizes=[1, 2]", "pair=(3, 4)",
                            "cfg={'a': 1}", "name='vit'", "arch=resnet", "flag=True",
                            "off=false", "nothing=none", "expr=a=b", "empty="])
    assert got == {"num_classes": 10, "dropout": 0.2, "sizes": [1, 2], "pair": (3, 4),
                   "cfg": {"a": 1}, "name": "vit", "arch": "resnet", "flag": True,
                   "off": False, "nothing": None, "expr": "a=b", "empty": ""}


def test_parse_model_args_never_evaluates():
    got = parse_model_args(["x=__import__('os').system('false')", "y=1+1j", "z=2**10"])
    assert got["x"] == "__import__('os').system('false')"
    assert got["z"] == "2**10"


@pytest.mark.parametrize("bad", ["novalue", "=3", "1x=2", "a b=1"])
def test_parse_model_args_bad_pair(bad):
    with pytest.raises(ReadError) as err:
        parse_model_args([bad])
    assert "\n" not in str(err.value) and "KEY=VALUE" in str(err.value)


# -- torchvision ----------------------------------------------------------------------

def test_torchvision_target_is_the_models_state_dict():
    target = load_target("torchvision:squeezenet1_1", {"num_classes": 10})
    real = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    sd = real.state_dict()
    assert list(target.tensors) == list(sd)
    for key, t in target.tensors.items():
        assert t.key == key and t.device == "meta"
        assert t.shape == tuple(sd[key].shape)
        assert t.dtype == str(sd[key].dtype).removeprefix("torch.")
    assert target.param_keys == {k for k, _ in real.named_parameters()}
    assert target.tensors["classifier.1.weight"].shape == (10, 512, 1, 1)
    assert target.kind == "model" and target.spec == "torchvision:squeezenet1_1"
    assert target.label == "torchvision squeezenet1_1(num_classes=10)"
    assert target.metadata == {k: dict(v) for k, v in sd._metadata.items()}


def test_batchnorm_metadata_and_auto_fill():
    target = load_target("torchvision:resnet18")
    assert target.metadata["bn1"] == {"version": 2}
    assert target.metadata[""] == {"version": 1}
    assert "bn1.num_batches_tracked" in target.auto_fill
    assert "bn1.num_batches_tracked" not in target.param_keys
    assert target.tensors["bn1.num_batches_tracked"].dtype == "int64"
    assert len(target.auto_fill) == 20


def test_model_that_needs_real_data_while_building_falls_back():
    # regnet computes its widths with tensors (.tolist()): impossible on meta alone
    target = load_target("torchvision:regnet_x_400mf")
    real = torchvision.models.regnet_x_400mf(weights=None)
    assert {k: t.shape for k, t in target.tensors.items()} == \
        {k: tuple(v.shape) for k, v in real.state_dict().items()}
    assert all(t.device == "meta" for t in target.tensors.values())


def test_detection_model_downloads_no_backbone():
    target = load_target("torchvision:fasterrcnn_mobilenet_v3_large_fpn")
    assert "roi_heads.box_predictor.cls_score.weight" in target.tensors


def test_torchvision_models_lists_families():
    names = torchvision_models()
    assert {"resnet18", "squeezenet1_1", "fasterrcnn_resnet50_fpn"} <= set(names)
    assert names == sorted(names)


# -- user code ------------------------------------------------------------------------

def test_sample_factory_file(tmp_path):
    target = load_target(f"{SAMPLES}/targets.py:tiny_vit", {"num_classes": 4})
    assert target.tensors["heads.head.weight"].shape == (4, 32)
    assert len(target.tensors) == 32
    assert target.label.endswith("targets.py:tiny_vit(num_classes=4)")


def test_class_from_file_is_imported_by_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    target = load_target(f"{SAMPLES}/models.py:TinyNet")
    assert (tmp_path / "pttui_models_imported").exists()  # building a model runs its code
    assert "models" not in sys.modules or not hasattr(sys.modules["models"], "TinyNet")
    assert target.metadata["features.1"] == {"version": 2}
    assert target.auto_fill == {"features.1.num_batches_tracked",
                                "features.4.num_batches_tracked"}


def test_sibling_imports_work_and_sys_path_is_restored(tmp_path):
    _write(tmp_path, "layers.py", """
        from torch import nn
        def block(n):
            return nn.Linear(n, n)
    """)
    path = _write(tmp_path, "net.py", """
        from torch import nn
        from layers import block
        class Net(nn.Module):
            def __init__(self, width=4):
                super().__init__()
                self.body = block(width)
    """)
    before = list(sys.path)
    target = load_target(f"{path}:Net", {"width": 6})
    assert target.tensors["body.weight"].shape == (6, 6)
    assert sys.path == before


def test_module_specs_class_factory_instance_and_state_dict(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write(tmp_path, "pttui_test_zoo.py", """
        import torch
        from torch import nn
        def build(n=3):
            return nn.Sequential(nn.Linear(n, 2), nn.ReLU(), nn.Linear(2, 1))
        instance = nn.Linear(5, 5)
        def weights():
            return {"a.weight": torch.zeros(2, 2), "a.bias": torch.zeros(2)}
    """)
    assert load_target("torch.nn:Linear", {"in_features": 3, "out_features": 4}) \
        .tensors["weight"].shape == (4, 3)
    assert load_target("pttui_test_zoo:build", {"n": 7}).tensors["0.weight"].shape == (2, 7)
    assert load_target("pttui_test_zoo:instance").tensors["weight"].shape == (5, 5)
    sd = load_target("pttui_test_zoo:weights")
    assert list(sd.tensors) == ["a.weight", "a.bias"] and sd.param_keys == {"a.weight", "a.bias"}


def test_tied_weights_and_non_persistent_buffers(tmp_path):
    path = _write(tmp_path, "lm.py", """
        import torch
        from torch import nn
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(8, 8)
                self.register_buffer("mask", torch.ones(4, 4), persistent=False)
                self.register_buffer("scale", torch.ones(1))
        class TinyLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(16, 8)
                self.block = Block()
                self.head = nn.Linear(8, 16, bias=False)
                self.head.weight = self.emb.weight
    """)
    target = load_target(f"{path}:TinyLM")
    assert target.tied == {"head.weight": "emb.weight"}
    assert "head.weight" in target.tensors  # state_dict keeps both names
    assert target.non_persistent == {"block.mask"}
    assert "block.mask" not in target.tensors
    assert "block.scale" in target.tensors and "block.scale" not in target.param_keys
    assert target.tensors["block.scale"].kind == "tensor"
    assert target.tensors["emb.weight"].kind == "parameter"


def test_reference_target():
    target = load_target(f"ref:{SAMPLES}/tiny_vit.safetensors")
    assert target.kind == "reference" and len(target.tensors) == 32
    assert target.param_keys == set(target.tensors)
    assert "tiny_vit.safetensors" in target.label
    with_md = load_target(f"ref:{SAMPLES}/squeezenet1_1.pt")
    assert with_md.metadata["features.0"] == {"version": 1}


def test_reference_target_sees_tied_storage(tmp_path):
    emb = torch.zeros(4, 2)
    path = tmp_path / "tied.pt"
    torch.save({"emb.weight": emb, "head.weight": emb, "other": torch.zeros(4, 2)}, path)
    assert load_target(f"ref:{path}").tied == {"head.weight": "emb.weight"}


# -- errors: one clear line each ------------------------------------------------------

def test_errors_are_one_line(tmp_path):
    assert "close names: resnet18" in _one_line_error("torchvision:resnet19")
    assert "no module named 'pttui_no_such_pkg'" in _one_line_error("pttui_no_such_pkg.mod:f")
    msg = _one_line_error("torch.nn:Linearr")
    assert "no attribute 'Linearr'" in msg and "Linear" in msg
    msg = _one_line_error("torch.nn:Linear", {"bogus": 1})
    assert "raised TypeError" in msg and "bogus" in msg
    assert "not an nn.Module" in _one_line_error("json:dumps", {"obj": 1})
    assert "no such file" in _one_line_error(f"{tmp_path}/nope.py:Net")
    assert "empty model spec" in _one_line_error("  ")
    assert "torchvision:resnet18" in _one_line_error("resnet18")
    assert "x.py:build_model" in _one_line_error("x.py")
    assert f"ref:{SAMPLES}/squeezenet1_1.pt" in _one_line_error(f"{SAMPLES}/squeezenet1_1.pt")
    assert "no model arguments" in _one_line_error(f"ref:{SAMPLES}/squeezenet1_1.pt", {"a": 1})
    assert _one_line_error(f"ref:{tmp_path}/missing.pt")


def test_user_code_errors_keep_the_first_line(tmp_path):
    boom = _write(tmp_path, "boom.py", """
        raise RuntimeError("boom at import\\nsecond line")
    """)
    msg = _one_line_error(f"{boom}:Net")
    assert "RuntimeError: boom at import" in msg and "second line" not in msg
    exits = _write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    assert "SystemExit" in _one_line_error(f"{exits}:Net")
    bad = _write(tmp_path, "bad.py", """
        from torch import nn
        def needs_values():
            m = nn.Linear(2, 2)
            float(m.weight.detach().sum())  # needs real data: impossible on meta
            return m
        def not_a_model():
            return 42
        class Config:
            pass
        def parses_argv():
            import argparse
            argparse.ArgumentParser().parse_args(["--nope"])
    """)
    assert "meta device" in _one_line_error(f"{bad}:needs_values")
    assert "int, not an nn.Module" in _one_line_error(f"{bad}:not_a_model")
    assert "Config, not an nn.Module" in _one_line_error(f"{bad}:Config")
    assert "no attribute 'Nett'" in _one_line_error(f"{bad}:Nett")
    assert "SystemExit" in _one_line_error(f"{bad}:parses_argv")


def test_lazy_module_target():
    target = load_target("torch.nn:LazyLinear", {"out_features": 3})
    assert target.tensors["weight"].kind == "lazy"


def test_built_on_meta_costs_no_memory():
    # a 4096 x 65536 fp32 layer is 1 GiB; on meta it is free and instant
    target = load_target("torch.nn:Linear", {"in_features": 65536, "out_features": 4096})
    assert target.tensors["weight"].nbytes == 4096 * 65536 * 4


def test_nn_module_target_matches_real_model_on_meta():
    target = load_target("torch.nn:TransformerEncoderLayer", {"d_model": 16, "nhead": 2})
    real = nn.TransformerEncoderLayer(d_model=16, nhead=2)
    assert {k: t.shape for k, t in target.tensors.items()} == \
        {k: tuple(v.shape) for k, v in real.state_dict().items()}


# -- argument mistakes say what happened ------------------------------------------------

def test_weights_cannot_be_set_and_say_why():
    for arg in ("weights", "weights_backbone"):
        msg = _one_line_error("torchvision:squeezenet1_1", parse_model_args([f"{arg}=DEFAULT"]))
        assert f"`{arg}` cannot be set" in msg and f"{arg}=None" in msg, msg
        assert "multiple values" not in msg and f"drop {arg}=DEFAULT" in msg


def test_a_bare_word_that_the_model_rejects_is_named():
    msg = _one_line_error("torchvision:squeezenet1_1", parse_model_args(["num_classes=abc"]))
    assert "raised TypeError" in msg  # torch's own words stay...
    assert "num_classes=abc is not a Python literal, so it was passed as the string 'abc' " \
           "and the model rejected it" in msg  # ...and say why it got a string
    # a literal that fails is not blamed on quoting
    msg = _one_line_error("torchvision:squeezenet1_1", parse_model_args(["num_classes=-1"]))
    assert "not a Python literal" not in msg
    # a bare word the factory accepts is fine
    assert parse_model_args(["arch=resnet"]).bare == {"arch"}
    assert parse_model_args(["n=10", "name='x'"]).bare == frozenset()


def test_a_model_argument_given_twice_is_refused():
    with pytest.raises(ReadError) as err:
        parse_model_args(["num_classes=10", "dropout=0.1", "num_classes=5"])
    assert str(err.value) == ("model argument num_classes is given twice (num_classes=10 and "
                              "num_classes=5); give it once")


def test_reference_errors_name_the_reference(tmp_path):
    missing = tmp_path / "missing.pt"
    msg = _one_line_error(f"ref:{missing}")
    assert msg.startswith(f"ref:{missing}: cannot read the reference checkpoint {missing}: "
                          "no such file")
    assert _one_line_error("ref:/dev/zero") == (
        "ref:/dev/zero: the reference checkpoint /dev/zero is a character device, not a "
        "regular file")


def test_special_files(tmp_path):
    from pttui.core.target import special_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert special_file("/dev/zero") == "a character device, not a regular file"
    assert special_file(str(fifo)) == "a FIFO (named pipe), not a regular file"
    assert special_file(str(SAMPLES / "squeezenet1_1.pt")) is None
    assert special_file(str(tmp_path)) is None and special_file(str(tmp_path / "no")) is None


# -- completion helpers: no user code runs --------------------------------------------------

def test_factories_and_keywords_by_parsing(tmp_path):
    from pttui.core.target import factory_keywords, file_factories

    path = _write(tmp_path, "m.py", """
        raise SystemExit("importing this file is a bug")
        def f(a, b=2, *args, c, d=None, **kw):
            pass
        class M:
            def __init__(self, width=8):
                pass
        class Bare:
            pass
    """)
    assert file_factories(path) == [("f", "def (a, b=2, c, …)"), ("M", "class (width=8)"),
                                    ("Bare", "class ()")]
    assert factory_keywords(path, "f") == [("a", "required"), ("b", "default 2"),
                                           ("c", "required"), ("d", "default None")]
    assert factory_keywords(path, "M") == [("width", "default 8")]
    assert factory_keywords(path, "nope") == [] and file_factories(str(tmp_path / "x.py")) == []


def test_torchvision_keywords_match_the_model_class():
    from pttui.core.target import torchvision_keywords

    got = dict(torchvision_keywords("squeezenet1_1"))
    assert got["num_classes"] == "default 1000" and got["dropout"] == "default 0.5"
    assert "weights" not in got and "progress" not in got
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=7, dropout=0.1)
    assert model.classifier[1].out_channels == 7  # the keywords offered do build
    detection = dict(torchvision_keywords("fasterrcnn_resnet50_fpn"))
    assert "weights_backbone" not in detection and "trainable_backbone_layers" in detection
    assert torchvision_keywords("no_such_model") == []
