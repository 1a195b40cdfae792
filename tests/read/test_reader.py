"""The reader against real torch.save files: what it reports is what torch.load returns."""

from __future__ import annotations

import argparse
import io
import zipfile

import pytest
import torch
import torch.nn as nn
import torchvision

from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint

from tests.helpers import run_cli

from tests.helpers import reader_facts, torch_facts


def _save(tmp_path, obj, name="ckpt.pt", **kw):
    path = tmp_path / name
    torch.save(obj, path, **kw)
    return path


@pytest.fixture(scope="module")
def squeeze():
    torch.manual_seed(0)
    return torchvision.models.squeezenet1_1(weights=None)


def test_plain_state_dict_matches_torch(tmp_path, squeeze):
    sd = squeeze.state_dict()
    ckpt = open_checkpoint(str(_save(tmp_path, sd)))
    assert ckpt.format == "torch-zip"
    assert ckpt.selected == ()
    assert reader_facts(ckpt.tensors) == torch_facts(sd)
    assert list(ckpt.tensors) == list(sd)  # state_dict order is kept
    assert ckpt.containers[0].params == sum(v.numel() for v in sd.values())
    assert all(t.nbytes == v.numel() * v.element_size() for t, v in
               zip(ckpt.tensors.values(), sd.values()))
    # BatchNorm/version metadata travels with the state_dict
    assert ckpt.state_metadata[""] == {"version": 1}


def test_legacy_format_matches_torch_and_locates_storages(tmp_path):
    sd = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    path = _save(tmp_path, sd, _use_new_zipfile_serialization=False)
    ckpt = open_checkpoint(str(path))
    assert ckpt.format == "torch-legacy"
    assert reader_facts(ckpt.tensors) == torch_facts(sd)
    raw = path.read_bytes()
    # the located offsets really point at each tensor's bytes
    for key, t in ckpt.tensors.items():
        off = ckpt.storage_offsets[t.storage.key]
        assert raw[off:off + t.nbytes] == sd[key].numpy().tobytes()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.uint8, torch.bool, torch.complex64, torch.uint16,
                                   torch.float8_e4m3fn, torch.float8_e5m2, torch.int32])
def test_every_dtype(tmp_path, dtype):
    sd = {"x": torch.zeros(3, 5, dtype=dtype)}
    ckpt = open_checkpoint(str(_save(tmp_path, sd)))
    assert reader_facts(ckpt.tensors) == torch_facts(sd)
    assert ckpt.tensors["x"].nbytes == 15 * torch.empty((), dtype=dtype).element_size()


def test_views_ties_and_parameters(tmp_path):
    base = torch.arange(20, dtype=torch.float32)
    emb = nn.Parameter(torch.zeros(10, 4))
    sd = {"view": base[5:15].view(2, 5), "whole": base, "emb.weight": emb, "head.weight": emb,
          "t": base.view(4, 5).t()}
    ckpt = open_checkpoint(str(_save(tmp_path, sd)))
    t = ckpt.tensors
    assert reader_facts(t) == torch_facts(sd)
    assert t["view"].storage_offset == 5 and t["view"].storage.ident == t["whole"].storage.ident
    assert t["emb.weight"].storage.ident == t["head.weight"].storage.ident  # tied
    assert t["emb.weight"].kind == "parameter"
    assert t["t"].stride == (1, 5)


def test_quantized_and_sparse(tmp_path):
    q = torch.quantize_per_tensor(torch.rand(4, 4), 0.1, 0, torch.qint8)
    sp = torch.eye(3).to_sparse()
    sd = {"q": q, "sp": sp}
    ckpt = open_checkpoint(str(_save(tmp_path, sd)))
    assert ckpt.tensors["q"].shape == (4, 4) and ckpt.tensors["q"].dtype == "qint8"
    assert ckpt.tensors["sp"].shape == (3, 3) and ckpt.tensors["sp"].kind == "sparse"


def test_cuda_locations_are_kept(tmp_path):
    """A file saved on a GPU says cuda:0; the reader reports it as stored."""
    tag = lambda storage: "cuda:1" if getattr(storage, "_pttui_fake_cuda", False) else None  # noqa: E731
    registry = torch.serialization._package_registry
    before = list(registry)
    torch.serialization.register_package(-50, tag, lambda obj, loc: None)
    try:
        w = torch.ones(3)
        w.untyped_storage()._pttui_fake_cuda = True
        path = _save(tmp_path, {"w": w, "cpu": torch.zeros(1)})
    finally:
        registry[:] = before  # leave torch.load as other tests expect it
    ckpt = open_checkpoint(str(path))
    assert ckpt.tensors["w"].device == "cuda:1"
    assert ckpt.tensors["cpu"].device == "cpu"


def test_whole_pickled_module_gives_state_dict_keys(tmp_path):
    class WithBuffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.Linear(4, 2)
            self.register_buffer("scratch", torch.zeros(2), persistent=False)
            self.register_buffer("kept", torch.zeros(3))

    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    big = torchvision.models.squeezenet1_1(weights=None, num_classes=3)
    for m in (model, big):
        path = _save(tmp_path, m, "whole.pt")
        ckpt = open_checkpoint(str(path))
        assert ckpt.containers[0].kind == "module"
        assert reader_facts(ckpt.tensors) == torch_facts(m.state_dict())
        assert list(ckpt.tensors) == list(m.state_dict())
        # a whole model needs its classes' code to load: nothing pttui offers to allow-list
        assert "torch.nn.modules.linear.Linear" in ckpt.globals.dangerous or m is big
        assert not ckpt.globals.blocked
    # non-persistent buffers are not in state_dict, so not in the reading either
    mod = WithBuffers()
    sd = mod.state_dict()
    # a class defined in a test can't be pickled by reference; rebuild it as a module tree
    seq = nn.Sequential()
    seq.body, seq.head = mod.body, mod.head
    seq.register_buffer("scratch", torch.zeros(2), persistent=False)
    ckpt = open_checkpoint(str(_save(tmp_path, seq, "np.pt")))
    assert "scratch" not in ckpt.tensors
    assert set(ckpt.tensors) == set(seq.state_dict())
    assert set(sd) - {"kept"} == set(ckpt.tensors)


def test_training_checkpoint_containers_and_other(tmp_path, squeeze):
    sd = squeeze.state_dict()
    opt = torch.optim.SGD(squeeze.parameters(), lr=0.1, momentum=0.9)
    squeeze(torch.rand(1, 3, 64, 64)).sum().backward()
    opt.step()
    obj = {"epoch": 7, "model": sd, "model_ema": {k: v.clone() for k, v in sd.items()},
           "optimizer": opt.state_dict(), "args": argparse.Namespace(lr=0.1, arch="sq"),
           "best_acc": 0.5}
    ckpt = open_checkpoint(str(_save(tmp_path, obj)))
    paths = {c.path: c.kind for c in ckpt.containers}
    assert paths[("model",)] == "state_dict"
    assert paths[("model_ema",)] == "state_dict"
    assert paths[("optimizer", "state")] == "optimizer"
    assert ckpt.selected == ("model",)  # raw weights over EMA and optimizer state
    assert ckpt.other["epoch"] == 7 and ckpt.other["best_acc"] == 0.5
    assert ckpt.other["args"]["__class__"] == "argparse.Namespace"
    assert ckpt.other["args"]["lr"] == 0.1
    assert ckpt.globals.blocked == ["argparse.Namespace"]
    sel = open_checkpoint(str(tmp_path / "ckpt.pt"), select=("model_ema",))
    assert sel.selected == ("model_ema",)
    with pytest.raises(ReadError, match="no container nope"):
        open_checkpoint(str(tmp_path / "ckpt.pt"), select=("nope",))


def _clone(sd: dict) -> dict:
    return {k: v.clone() for k, v in sd.items()}


@pytest.mark.parametrize("make, paths, selected", [
    # every top-level entry holds tensors: still several containers, not one mix
    (lambda sd, opt: {"model": sd, "optimizer": opt},
     {("model",): "state_dict", ("optimizer", "state"): "optimizer"}, ("model",)),
    (lambda sd, opt: {"state_dict": sd, "state_dict_ema": _clone(sd)},
     {("state_dict",): "state_dict", ("state_dict_ema",): "state_dict"}, ("state_dict",)),
    (lambda sd, opt: {"ema": {"model": sd}, "state_dict": _clone(sd)},
     {("ema", "model"): "state_dict", ("state_dict",): "state_dict"}, ("state_dict",)),
    (lambda sd, opt: {"model": sd}, {("model",): "state_dict"}, ("model",)),
    # two flat state_dicts under plain names: apart, and together for a model of both
    (lambda sd, opt: {"encoder": sd, "decoder": _clone(sd)},
     {(): "state_dict", ("encoder",): "state_dict", ("decoder",): "state_dict"}, ()),
    # parts of one model named like roles ("text_model") are not roles: apart and together
    (lambda sd, opt: {"text_model": sd, "vision_model": _clone(sd)},
     {(): "state_dict", ("text_model",): "state_dict", ("vision_model",): "state_dict"}, ()),
    # a list of one state_dict is that state_dict, not the list under a `0.` prefix
    (lambda sd, opt: [sd], {("0",): "state_dict"}, ("0",)),
    # optimizer state alone and a nested parameter tree stay one container each
    (lambda sd, opt: opt, {("state",): "optimizer"}, ("state",)),
    (lambda sd, opt: {"params": {"enc": {"w": torch.zeros(2)}, "dec": {"w": torch.ones(2)}}},
     {("params",): "state_dict"}, ("params",)),
])
def test_containers_side_by_side(tmp_path, squeeze, make, paths, selected):
    sd = squeeze.state_dict()
    opt = torch.optim.Adam(squeeze.parameters())
    squeeze(torch.rand(1, 3, 64, 64)).sum().backward()
    opt.step()
    ckpt = open_checkpoint(str(_save(tmp_path, make(sd, opt.state_dict()))))
    assert {c.path: c.kind for c in ckpt.containers} == paths
    assert ckpt.selected == selected
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    for c in ckpt.containers:
        node = loaded
        for p in c.path:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if c.kind == "state_dict" and c.path and all(
                isinstance(v, torch.Tensor) for v in node.values()):
            assert set(c.tensors) == set(node)  # a flat state_dict: the same keys


def test_a_bare_tensor_is_one_tensor_not_an_empty_file(tmp_path):
    torch.save(torch.arange(6, dtype=torch.int16).reshape(2, 3), tmp_path / "t.pt")
    ckpt = open_checkpoint(str(tmp_path / "t.pt"))
    (c,) = ckpt.containers
    assert c.kind == "tensor" and c.path == () and ckpt.selected == ()
    t = c.tensors["tensor"]
    assert (t.shape, t.dtype, t.nbytes) == ((2, 3), "int16", 12)
    res = run_cli("inspect", str(tmp_path / "t.pt"))
    assert res.returncode == 0 and "no tensors" not in res.stdout and "[2, 3]" in res.stdout


def test_numpy_scalar_is_decoded_without_numpy(tmp_path):
    import numpy as np

    path = _save(tmp_path, {"w": torch.zeros(1), "acc": np.float64(0.913), "n": np.int64(3)})
    ckpt = open_checkpoint(str(path))
    assert ckpt.other == {"acc": 0.913, "n": 3}
    assert "numpy.core.multiarray.scalar" in ckpt.globals.blocked or \
        "numpy._core.multiarray.scalar" in ckpt.globals.blocked


def test_torchscript_archive(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 8, 8))
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    ckpt = open_checkpoint(str(path))
    assert ckpt.format == "torchscript"
    assert reader_facts(ckpt.tensors) == torch_facts(torch.jit.load(str(path)).state_dict())
    assert ckpt.globals.dangerous == []


def test_safetensors_agrees_with_the_library(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    sd = {"a.weight": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.bfloat16),
          "c": torch.zeros(0, 5, dtype=torch.int64)}
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path), metadata={"format": "pt"})
    ckpt = open_checkpoint(str(path))
    assert ckpt.format == "safetensors"
    with safe_open(str(path), framework="pt") as f:
        lib = {k: (list(f.get_slice(k).get_shape()), str(f.get_tensor(k).dtype)[6:])
               for k in f.keys()}
        assert f.metadata() == ckpt.metadata == {"format": "pt"}
    assert reader_facts(ckpt.tensors) == lib


def test_sharded_sets(tmp_path):
    import json

    from safetensors.torch import save_file

    a, b = {"x.weight": torch.zeros(2, 2)}, {"y.weight": torch.ones(3), "y.bias": torch.ones(1)}
    save_file(a, str(tmp_path / "m-1.safetensors"))
    save_file(b, str(tmp_path / "m-2.safetensors"))
    wm = {"x.weight": "m-1.safetensors", "y.weight": "m-2.safetensors", "y.bias": "m-2.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    ckpt = open_checkpoint(str(tmp_path / "model.safetensors.index.json"))
    assert ckpt.format == "sharded"
    assert {k: t.storage.shard for k, t in ckpt.tensors.items()} == wm
    # pytorch_model.bin style
    torch.save(a, tmp_path / "p-1.bin")
    torch.save(b, tmp_path / "p-2.bin")
    wm2 = {k: v.replace("m-", "p-").replace(".safetensors", ".bin") for k, v in wm.items()}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": wm2}))
    ckpt = open_checkpoint(str(tmp_path / "pytorch_model.bin.index.json"))
    assert set(ckpt.tensors) == set(wm2)
    # a map pointing outside its folder is refused
    (tmp_path / "evil.index.json").write_text(json.dumps({"weight_map": {"x": "../../etc/passwd"}}))
    with pytest.raises(ReadError, match="outside its folder"):
        open_checkpoint(str(tmp_path / "evil.index.json"))
    (tmp_path / "gone.index.json").write_text(json.dumps({"weight_map": {"x": "nope.safetensors"}}))
    with pytest.raises(ReadError, match="missing"):
        open_checkpoint(str(tmp_path / "gone.index.json"))


def test_dcp_folder(tmp_path):
    import torch.distributed.checkpoint as dcp

    sd = {"a.weight": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.bfloat16)}
    dcp.save(sd, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    ckpt = open_checkpoint(str(tmp_path / "dcp"))
    assert ckpt.format == "dcp"
    assert reader_facts(ckpt.tensors) == torch_facts(sd)


# -- files that are not (whole) checkpoints -------------------------------------------

def _zip_without(path, dropped: str):
    src = zipfile.ZipFile(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if not info.filename.endswith(dropped):
                dst.writestr(info, src.read(info.filename))
    return buf.getvalue()


@pytest.mark.parametrize("case, expect", [
    ("empty", "empty"),
    ("text", "text file"),
    ("npy", "NumPy"),
    ("plain_pickle", "did not write"),
    ("truncated", "zip directory"),
    ("no_data_pkl", "no data.pkl"),
    ("lfs", "Git LFS"),
])
def test_unreadable_files_get_one_clear_line(tmp_path, case, expect):
    import pickle

    import numpy as np

    good = _save(tmp_path, {"w": torch.zeros(100, 100)}, "good.pt")
    p = tmp_path / f"{case}.pt"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("Not Found\n")
    elif case == "npy":
        np.save(p.with_suffix(".npy"), np.zeros(3))
        p.write_bytes(p.with_suffix(".npy").read_bytes())
    elif case == "plain_pickle":
        p.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    elif case == "truncated":
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "no_data_pkl":
        p.write_bytes(_zip_without(good, "data.pkl"))
    elif case == "lfs":
        p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    with pytest.raises(ReadError) as err:
        open_checkpoint(str(p))
    msg = str(err.value)
    assert expect in msg and "\n" not in msg and msg.startswith(str(p))


def _rezip(tmp_path, good, name, edit=lambda info, data: data, extra=()):
    """``good``'s records rewritten (``edit(info, data)``), plus ``extra`` ones
    ((ZipInfo or name, data), duplicate names allowed), as ``tmp_path / name``."""
    import warnings

    src = zipfile.ZipFile(good)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                dst.writestr(info, edit(info, src.read(info.filename)))
            for what, data in extra:
                dst.writestr(what, data)
    out = tmp_path / name
    out.write_bytes(buf.getvalue())
    return out


def test_duplicate_zip_records_are_refused(tmp_path):
    good = _save(tmp_path, {"w": torch.zeros(2)}, "good.pt")
    first = zipfile.ZipFile(good).infolist()[0]
    p = _rezip(tmp_path, good, "dup.pt", extra=[(first, b"\x80\x02}q\x00.")])  # data.pkl again
    with pytest.raises(ReadError, match="duplicate"):
        open_checkpoint(str(p))


@pytest.mark.parametrize("extra, refused", [
    ("{a}/data/1", True),    # the same storage record twice
    ("{a}/DATA/1", True),    # the same, as torch's miniz matches names (ASCII case ignored)
    ("{A}/data/1", True),
    ("{a}/data/01", False),  # another name: a record nothing references
    ("{a}/data/7", False),
])
def test_storage_records_matched_as_torch_matches_them(tmp_path, extra, refused):
    """The reader keeps storage records by number (``data/1``), other records by name;
    a collision between the two kinds is still an ambiguous archive."""
    good = _save(tmp_path, {"a": torch.zeros(2), "b": torch.ones(3)}, "good.pt")
    folder = zipfile.ZipFile(good).namelist()[0].split("/")[0]
    p = _rezip(tmp_path, good, "extra.pt",
               extra=[(extra.format(a=folder, A=folder.upper()), b"\0" * 12)])
    if refused:
        with pytest.raises(ReadError, match="two records named"):
            open_checkpoint(str(p))
    else:
        ckpt = open_checkpoint(str(p))
        assert {k: t.shape for k, t in ckpt.tensors.items()} == {"a": (2,), "b": (3,)}
        assert not [n for n in ckpt.notes if n.startswith("problem")]


def test_pickle_cut_short_is_not_read_past_its_record(tmp_path):
    """data.pkl is unpickled straight from the file; one without its STOP must not run on
    into the records after it (their local headers, then tensor bytes)."""
    good = _save(tmp_path, {"a": torch.zeros(2)}, "good.pt")
    p = _rezip(tmp_path, good, "cut.pt",
               lambda info, data: data[:-1] if info.filename.endswith("data.pkl") else data)
    with pytest.raises(ReadError, match=r"the pickle is damaged \(Ran out of input\)"):
        open_checkpoint(str(p))


def test_storage_record_of_the_wrong_size_is_a_problem(tmp_path):
    good = _save(tmp_path, {"a": torch.zeros(2), "b": torch.ones(3)}, "good.pt")
    p = _rezip(tmp_path, good, "short.pt",
               lambda info, data: data[:4] if info.filename.endswith("data/1") else data)
    problems = [n for n in open_checkpoint(str(p)).notes if n.startswith("problem")]
    assert any("storage 1 declares 12 bytes but its record holds 4" in n for n in problems)


# -- legacy tar checkpoints (PyTorch 0.1-0.3) ---------------------------------------------

def _legacy_tar_sd():
    torch.manual_seed(0)
    emb = torch.randn(10, 4)
    base = torch.arange(20, dtype=torch.float32)
    return {"emb.weight": emb, "head.weight": emb, "head.bias": torch.zeros(10, dtype=torch.float64),
            "view": base[5:15].view(2, 5), "whole": base, "t": base.view(4, 5).t(),
            "steps": torch.tensor(7), "mask": torch.tensor([True, False, True]),
            "q": torch.ones(3, dtype=torch.int8), "h": torch.randn(2, 2).half()}


def test_legacy_tar_matches_torch_and_locates_storages(tmp_path):
    from tests.hostile.legacy_tar import legacy_tar_bytes

    sd = _legacy_tar_sd()
    path = tmp_path / "old.pt"
    raw = legacy_tar_bytes({"state_dict": sd, "epoch": 3})
    assert b"comment=" in raw  # a pax extended header precedes a member: parsed, not tripped on
    path.write_bytes(raw)
    loaded = torch.load(path, weights_only=False)  # our own file: torch still reads the format
    ckpt = open_checkpoint(str(path))
    assert ckpt.format == "torch-legacy-tar" and ckpt.selected == ("state_dict",)
    assert reader_facts(ckpt.tensors) == torch_facts(loaded["state_dict"]) == torch_facts(sd)
    assert list(ckpt.tensors) == list(sd)
    assert ckpt.other == {"epoch": 3}
    t = ckpt.tensors
    assert t["emb.weight"].storage == t["head.weight"].storage  # tied, as torch.load sees it
    assert loaded["state_dict"]["emb.weight"].data_ptr() == loaded["state_dict"]["head.weight"].data_ptr()
    assert t["view"].storage_offset == 5 and t["t"].stride == (1, 5)
    for key, meta in t.items():  # each storage's located bytes are the tensor's storage bytes
        off = ckpt.storage_offsets[meta.storage.key]
        want = torch.empty(0, dtype=torch.uint8).set_(sd[key].untyped_storage()).numpy().tobytes()
        assert raw[off:off + meta.storage.nbytes] == want, key
    assert "torch.FloatStorage" in ckpt.globals.allowed and not ckpt.globals.dangerous
    assert any("legacy tar format" in n for n in ckpt.notes)


def test_legacy_tar_damage_is_one_clear_line(tmp_path):
    import tarfile

    from tests.hostile.legacy_tar import legacy_tar_bytes

    raw = legacy_tar_bytes({"w": torch.zeros(64)}, pax_comment=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[: raw.find(b"storages\0") + 512 + 100])  # inside the storages member
    with pytest.raises(ReadError, match="truncated") as err:
        open_checkpoint(str(cut))
    assert "\n" not in str(err.value)
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ReadError, match="not a legacy torch checkpoint"):
        open_checkpoint(str(other))


# -- safetensors written by pttui: tied names come back -----------------------------------

def test_safetensors_export_of_tied_weights_reads_back_with_both_keys(tmp_path):
    from pttui.core.export.export import export
    from pttui.core.read.tensordata import TensorSource

    emb = torch.randn(10, 4)
    torch.save({"emb.weight": emb, "head.weight": emb, "head.bias": torch.zeros(10)},
               tmp_path / "tied.pt")
    src = open_checkpoint(str(tmp_path / "tied.pt"))
    out = tmp_path / "tied.safetensors"
    res = export(src, dict(src.tensors), src.tensors, str(out))
    assert res.aliases == {"head.weight": "emb.weight"}  # stored once in the file
    ckpt = open_checkpoint(str(out))
    assert list(ckpt.tensors) == ["emb.weight", "head.weight", "head.bias"]
    t = ckpt.tensors
    assert t["head.weight"].storage == t["emb.weight"].storage
    assert (t["head.weight"].shape, t["head.weight"].dtype) == ((10, 4), "float32")
    assert any("tied name restored" in n for n in ckpt.notes)
    with TensorSource(ckpt) as source:  # the restored name reads the stored bytes
        assert torch.equal(source.read(t["head.weight"]), emb)


def test_safetensors_aliases_that_cannot_be_restored_are_named(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "a.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={
        "pttui.aliases": '{"v": "w", "w": "w", "x": "missing"}'})
    ckpt = open_checkpoint(str(path))
    assert list(ckpt.tensors) == ["w", "v"]
    problem = next(n for n in ckpt.notes if n.startswith("problem:"))
    assert "2 name(s)" in problem and "already a stored tensor" in problem
    save_file({"w": torch.zeros(2)}, str(path), metadata={"pttui.aliases": "[1, 2]"})
    ckpt = open_checkpoint(str(path))
    assert list(ckpt.tensors) == ["w"]
    assert any("not a JSON object of names" in n for n in ckpt.notes)


# -- NumPy dtypes: the classes torch's weights-only load needs too ------------------------

def test_numpy_dtype_classes_are_predicted_and_the_blocked_list_loads(tmp_path):
    import importlib

    import numpy as np

    path = _save(tmp_path, {"w": torch.zeros(2), "acc": np.float64(0.9), "lr": np.float32(0.1),
                            "ids": np.arange(3), "flag": np.bool_(True)})
    scan = open_checkpoint(str(path)).globals
    for cls in ("Float64DType", "Float32DType", "Int64DType", "BoolDType"):
        assert f"numpy.dtypes.{cls}" in scan.blocked
    assert "numpy.dtype" in scan.blocked and not scan.dangerous

    def resolve(name):
        mod, attr = name.rsplit(".", 1)
        return getattr(importlib.import_module(mod), attr)

    with pytest.raises(Exception, match="Float64DType|Weights only"):
        with torch.serialization.safe_globals([resolve(n) for n in scan.blocked
                                               if not n.startswith("numpy.dtypes.")]):
            torch.load(path, weights_only=True)
    with torch.serialization.safe_globals([resolve(n) for n in scan.blocked]):
        got = torch.load(path, weights_only=True)  # the blocked list is all torch needs
    assert got["acc"] == 0.9 and got["ids"].tolist() == [0, 1, 2]


# -- one line that says what to do --------------------------------------------------------

def test_messages_say_what_to_do(tmp_path):
    import os
    import struct

    import numpy as np

    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ReadError, match=r"NumPy \.npy array file, not a PyTorch checkpoint; "
                                        r"load it with numpy\.load"):
        open_checkpoint(str(tmp_path / "a.npy"))
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,99]}}'
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 99)
    with pytest.raises(ReadError, match="spans 99 bytes but its shape and dtype need 8; .*"
                                        "re-export it"):
        open_checkpoint(str(bad))
    with pytest.raises(ReadError, match="/dev/zero: not a regular file \\(a device\\)"):
        open_checkpoint("/dev/zero")
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(ReadError, match="not a regular file \\(a pipe\\)"):
        open_checkpoint(str(fifo))  # refused before open(), which would wait for a writer
