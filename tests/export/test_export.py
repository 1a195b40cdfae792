"""export(): bit-identical outputs, atomic writes, never over the source, small memory."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import threading

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import pttui.core.export.export as export_mod
from pttui.core.export.export import ExportCancelled, export
from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint

from tests.helpers import ROOT, SAMPLES
from tests.read.test_tensordata import _to_big_endian, same_bits

VIT = SAMPLES / "tiny_vit.safetensors"


def run_export(src, out, mapping=None, **kw):
    ckpt = open_checkpoint(str(src))
    return ckpt, export(ckpt, dict(ckpt.tensors) if mapping is None else mapping,
                        ckpt.tensors, str(out), **kw)


def load_out(path):
    return load_file(path) if str(path).endswith(".safetensors") else torch.load(
        path, weights_only=True)


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if "pttui-partial" in n)


@pytest.mark.parametrize("ext", [".pt", ".pth", ".bin", ".safetensors"])
@pytest.mark.parametrize("sample", ["tiny_vit_cuda.pt", "tiny_vit_legacy.pt", "tiny_vit_dcp",
                                    "tiny_vit_sharded/model.safetensors.index.json",
                                    "tiny_vit_sharded_bin/pytorch_model.bin.index.json"])
def test_outputs_are_bit_identical(tmp_path, sample, ext):
    out = tmp_path / f"out{ext}"
    ckpt, res = run_export(SAMPLES / sample, out)
    assert res.verified and res.problems == [] and res.path == str(out)
    assert res.format == ("safetensors" if ext == ".safetensors" else "torch-zip")
    assert res.tensors == 32 and res.nbytes == os.path.getsize(out) and res.seconds >= 0
    got, ref = load_out(out), load_file(VIT)
    assert set(got) == set(ref)
    assert all(same_bits(got[k], ref[k]) for k in ref)
    assert leftovers(tmp_path) == []


def test_renamed_keys_and_cast(tmp_path):
    ckpt = open_checkpoint(str(VIT))
    mapping = {f"model.{k}": m for k, m in ckpt.tensors.items()}
    mapping["model.class_token"] = mapping["model.class_token"]._replace(dtype="float16")
    ref = load_file(VIT)
    for ext in (".pt", ".safetensors"):
        out = tmp_path / f"renamed{ext}"
        export(ckpt, mapping, ckpt.tensors, str(out))
        got = load_out(out)
        assert set(got) == {f"model.{k}" for k in ref}
        assert got["model.class_token"].dtype == torch.float16
        assert torch.equal(got["model.class_token"], ref["class_token"].half())
        assert same_bits(got["model.conv_proj.weight"], ref["conv_proj.weight"])


@pytest.mark.parametrize("source", ["big-endian", "legacy", "dcp"])
@pytest.mark.parametrize("cast", [None, "bfloat16"])
def test_pt_stream_from_sources_bytes_cannot_be_copied_from(tmp_path, source, cast):
    """Big-endian, unaligned legacy and DCP sources go out through torch one storage at
    a time; uncast views keep sharing their storage, values are exact."""
    g = torch.Generator().manual_seed(2)
    base = torch.randn(4, 6, generator=g)
    sd = {"w": base, "wt": base.t(), "row": base[1], "h": torch.randn(5, generator=g).half(),
          "i": torch.arange(7, dtype=torch.int16), "d": torch.randn(3, dtype=torch.float64)}
    if source == "big-endian":
        torch.save(sd, tmp_path / "le.pt")
        _to_big_endian(tmp_path / "le.pt", tmp_path / "src.pt")
        path = tmp_path / "src.pt"
    elif source == "legacy":
        path = tmp_path / "src.pt"
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        import torch.distributed.checkpoint as dcp

        sd = {k: v.clone() for k, v in sd.items()}  # DCP keeps no views
        path = tmp_path / "dcp"
        dcp.save(sd, checkpoint_id=str(path), no_dist=True)
    ckpt = open_checkpoint(str(path))
    mapping = {k: m._replace(dtype=cast) if cast and m.dtype.startswith("float") else m
               for k, m in ckpt.tensors.items()}
    res = export(ckpt, mapping, ckpt.tensors, str(tmp_path / "out.pt"))
    assert res.verified
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert set(got) == set(sd)
    for k, v in sd.items():
        want = v.to(torch.bfloat16) if cast and v.is_floating_point() else v
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k
    if source != "dcp" and not cast:
        ptr = got["w"].untyped_storage().data_ptr()
        assert got["wt"].untyped_storage().data_ptr() == ptr
        assert got["row"].untyped_storage().data_ptr() == ptr


def test_state_dict_metadata_survives_in_pt(tmp_path):
    src = SAMPLES / "squeezenet1_1.pt"
    out = tmp_path / "sq.pt"
    ckpt, res = run_export(src, out, metadata=open_checkpoint(str(src)).state_metadata)
    assert res.verified
    want = torch.load(src, weights_only=True)
    got = torch.load(out, weights_only=True)
    assert got._metadata == want._metadata
    assert all(same_bits(got[k], want[k]) for k in want)


def test_verdict_says_what_was_compared(tmp_path):
    """A cast tensor is checked against the source cast to its dtype, and the verdict
    says so instead of claiming the bytes equal the source."""
    ckpt = open_checkpoint(str(VIT))
    ref = load_file(VIT)
    plain = export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "plain.pt"))
    assert plain.cast == {}
    assert plain.verdict.startswith("verified: every tensor read back equals the source")
    mapping = dict(ckpt.tensors)
    mapping["class_token"] = mapping["class_token"]._replace(dtype="float16")
    for ext in (".pt", ".safetensors"):
        some = export(ckpt, mapping, ckpt.tensors, str(tmp_path / f"some{ext}"))
        assert some.cast == {"float16": 1}
        assert some.verdict.startswith("verified by reading back: 31 kept tensors equal the "
                                       "source, 1 cast tensor equals the source cast to float16")
        assert torch.equal(load_out(tmp_path / f"some{ext}")["class_token"],
                           ref["class_token"].half())
    every = {k: m._replace(dtype="bfloat16") for k, m in ckpt.tensors.items()}
    res = export(ckpt, every, ckpt.tensors, str(tmp_path / "all.safetensors"))
    assert res.cast == {"bfloat16": 32} and res.to_json()["verdict"] == res.verdict
    assert res.verdict.startswith("verified: every tensor read back equals the source cast "
                                  "to bfloat16")
    got = load_file(tmp_path / "all.safetensors")
    assert all(torch.equal(got[k], ref[k].bfloat16()) for k in ref)
    unverified = export(ckpt, every, ckpt.tensors, str(tmp_path / "u.pt"), verify=False)
    assert unverified.verdict == "not verified"


def test_cast_export_verification_catches_a_wrong_cast(tmp_path, monkeypatch):
    """The digest of a cast tensor is taken from the source cast to the dtype: written
    bytes that differ from that cast (one bit flipped after writing) fail the read-back."""
    import pttui.core.export.stream as stream

    real = stream.write_at

    def corrupt(fd, offset, data, job):
        crc = real(fd, offset, data, job)
        if data.numel():
            byte = os.pread(fd, 1, offset)
            os.pwrite(fd, bytes([byte[0] ^ 1]), offset)
        return crc

    monkeypatch.setattr(stream, "write_at", corrupt)
    ckpt = open_checkpoint(str(VIT))
    mapping = {k: m._replace(dtype="float16") for k, m in ckpt.tensors.items()}
    out = tmp_path / "bad.pt"
    with pytest.raises(ReadError, match="verification .* failed"):
        export(ckpt, mapping, ckpt.tensors, str(out))
    assert not out.exists() and leftovers(tmp_path) == []


def _tied_file(tmp_path):
    emb = torch.randn(10, 4)
    sd = {"emb.weight": emb, "head.weight": emb, "head.bias": torch.zeros(10),
          "emb_row": emb[3], "half": torch.randn(6).half()}
    path = tmp_path / "tied.pt"
    torch.save(sd, path)
    return path, sd


def test_tied_weights_safetensors_deduplicated(tmp_path):
    path, sd = _tied_file(tmp_path)
    out = tmp_path / "tied.safetensors"
    _, res = run_export(path, out)
    assert res.aliases == {"head.weight": "emb.weight"}
    got = load_file(out)  # the safetensors library accepts it: nothing shares memory
    assert "head.weight" not in got
    assert all(same_bits(got[k], sd[k]) for k in got)
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["pttui.aliases"]) == {"head.weight": "emb.weight"}
    assert meta["format"] == "pt"
    assert any("views of shared memory" in p for p in res.problems)  # emb_row


def test_tied_weights_stay_tied_in_pt_even_when_cast(tmp_path):
    path, sd = _tied_file(tmp_path)
    ckpt = open_checkpoint(str(path))
    mapping = {k: m._replace(dtype="float64") if k.endswith("weight") else m
               for k, m in ckpt.tensors.items()}
    out = tmp_path / "cast.pt"
    export(ckpt, mapping, ckpt.tensors, str(out))
    got = torch.load(out, weights_only=True)
    assert got["emb.weight"].dtype == torch.float64
    assert got["emb.weight"].data_ptr() == got["head.weight"].data_ptr()
    assert torch.equal(got["emb_row"], sd["emb_row"])
    # uncast: a view stays a view of the same storage
    export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "plain.pt"))
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert (plain["emb_row"].untyped_storage().data_ptr()
            == plain["emb.weight"].untyped_storage().data_ptr())


def test_tied_weights_cast_to_safetensors_verify_and_read_back_tied(tmp_path):
    """A cast export of tied weights writes one copy; reading it back restores the alias
    (so verification must not call it an extra key), and both names come back."""
    path, sd = _tied_file(tmp_path)
    ckpt = open_checkpoint(str(path))
    mapping = {k: m._replace(dtype="float16") if k.endswith("weight") else m
               for k, m in ckpt.tensors.items()}
    out = tmp_path / "cast.safetensors"
    res = export(ckpt, mapping, ckpt.tensors, str(out))
    assert res.verified and res.aliases == {"head.weight": "emb.weight"}
    back = open_checkpoint(str(out))
    assert back.tensors["head.weight"].storage == back.tensors["emb.weight"].storage
    assert torch.equal(load_file(out)["emb.weight"], sd["emb.weight"].half())


def test_legacy_tar_source_exports_its_values(tmp_path):
    from tests.hostile.legacy_tar import legacy_tar_bytes

    torch.manual_seed(0)
    sd = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.randn(4),
          "t": torch.arange(6.).view(2, 3).t(), "n": torch.tensor(5)}
    src = tmp_path / "old.pt"
    src.write_bytes(legacy_tar_bytes({"state_dict": sd}))
    for ext in (".pt", ".safetensors"):
        out = tmp_path / f"new{ext}"
        _, res = run_export(src, out)
        assert res.verified
        got = load_file(out) if ext == ".safetensors" else torch.load(out, weights_only=True)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


def test_refuses_the_source(tmp_path):
    src = tmp_path / "w.pt"
    torch.save({"w": torch.ones(3)}, src)
    before = src.read_bytes()
    with pytest.raises(ReadError, match="is the source"):
        run_export(src, src, force=True)
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    with pytest.raises(ReadError, match="is the source"):
        run_export(src, link, force=True)
    hard = tmp_path / "hard.pt"
    os.link(src, hard)
    with pytest.raises(ReadError, match="is the source"):
        run_export(src, hard, force=True)
    assert src.read_bytes() == before


def test_refuses_a_shard_of_the_source(tmp_path):
    index = SAMPLES / "tiny_vit_sharded/model.safetensors.index.json"
    shard = SAMPLES / "tiny_vit_sharded/model-00001-of-00002.safetensors"
    before = shard.read_bytes()
    with pytest.raises(ReadError, match="is the source"):
        run_export(index, shard, force=True)
    assert shard.read_bytes() == before


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(ReadError, match="already exists") as err:
        run_export(VIT, out)
    assert "--force" in str(err.value)  # the TUI says its checkbox itself (test_trust)
    assert out.read_bytes() == b"keep me"
    run_export(VIT, out, force=True)
    assert set(load_file(out)) == set(load_file(VIT))


@pytest.mark.parametrize("out,msg", [
    ("missing/dir/out.pt", "does not exist"), (".", "is a folder"),
    ("out.npz", "cannot tell the format"),
])
def test_bad_destinations(tmp_path, out, msg):
    with pytest.raises(ReadError, match=msg):
        run_export(VIT, tmp_path / out)


@pytest.mark.parametrize("code,msg", [(errno.ENOSPC, "disk is full"),
                                      (errno.EROFS, "read-only filesystem"),
                                      (errno.EACCES, "permission denied")])
def test_os_errors_are_one_line(code, msg):
    err = export_mod.os_error(OSError(code, os.strerror(code)), "/x/out.pt")
    assert msg in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
@pytest.mark.parametrize("at", [3, 32])  # 32 with .pt: cancelled inside torch.save
def test_cancel_from_progress_leaves_nothing(tmp_path, ext, at):
    cancel, seen = threading.Event(), []

    def progress(done, total):
        seen.append((done, total))
        if done == at:
            cancel.set()

    out = tmp_path / f"out{ext}"
    with pytest.raises(ExportCancelled):
        run_export(VIT, out, progress=progress, cancel=cancel)
    assert seen == [(i, 32) for i in range(1, at + 1)]
    assert not out.exists() and leftovers(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path):
    def progress(done, total):
        if done == 5:
            raise KeyboardInterrupt

    out = tmp_path / "out.safetensors"
    with pytest.raises(KeyboardInterrupt):
        run_export(VIT, out, progress=progress)
    assert not out.exists() and leftovers(tmp_path) == []


def test_disk_full_mid_pt_stream_leaves_nothing(tmp_path, monkeypatch):
    """.pt through torch (a cast): storages are written one by one; the disk fills."""
    import pttui.core.export.stream as stream

    real, calls = stream.write_at, []

    def flaky(fd, offset, data, job):
        calls.append(1)
        if len(calls) == 4:
            os.pwrite(fd, b"partial", offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, data, job)

    monkeypatch.setattr(stream, "write_at", flaky)
    ckpt = open_checkpoint(str(VIT))
    mapping = {k: m._replace(dtype="float16") for k, m in ckpt.tensors.items()}
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="disk is full"):
        export(ckpt, mapping, ckpt.tensors, str(out))
    assert len(calls) == 4
    assert not out.exists() and leftovers(tmp_path) == []


def _float8_file(tmp_path):
    """A dtype pttui's own zip writer cannot name (float8): torch.save writes the .pt."""
    g = torch.Generator().manual_seed(1)
    sd = {"w": torch.randn(8, 4, generator=g), "tied": None,
          "q": torch.randn(16, generator=g).to(torch.float8_e4m3fn)}
    sd["tied"] = sd["w"]
    path = tmp_path / "f8.pt"
    torch.save(sd, path)
    return path, sd


def test_torch_save_fallback_casts_ties_once_and_verifies(tmp_path):
    path, sd = _float8_file(tmp_path)
    ckpt = open_checkpoint(str(path))
    mapping = {k: m._replace(dtype="bfloat16") if m.dtype == "float32" else m
               for k, m in ckpt.tensors.items()}
    out = tmp_path / "out.pt"
    res = export(ckpt, mapping, ckpt.tensors, str(out))
    assert res.verified and res.cast == {"bfloat16": 2}
    got = torch.load(out, weights_only=True)
    assert torch.equal(got["w"], sd["w"].to(torch.bfloat16))
    assert got["w"].data_ptr() == got["tied"].data_ptr()  # cast once, still tied
    assert same_bits(got["q"], sd["q"])


def test_disk_full_during_torch_save_leaves_nothing(tmp_path, monkeypatch):
    path, _ = _float8_file(tmp_path)
    real_save = torch.save

    def failing_save(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="disk is full"):
        run_export(path, out)
    monkeypatch.setattr(torch, "save", real_save)
    assert not out.exists() and leftovers(tmp_path) == []


def test_write_failure_mid_safetensors_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "COPY_BYTES", False)  # the torch path; test_rawexport.py covers the other
    calls = []
    real = export_mod.as_bytes

    def flaky(t):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(t)

    monkeypatch.setattr(export_mod, "as_bytes", flaky)
    out = tmp_path / "out.safetensors"
    with pytest.raises(ReadError, match="disk is full"):
        run_export(VIT, out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "COPY_BYTES", False)  # the torch path; test_rawexport.py covers the other
    monkeypatch.setattr(export_mod, "verify_file", lambda path, expected: ["x: differs"])
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="verification .* failed: x: differs"):
        run_export(VIT, out)
    assert not out.exists() and leftovers(tmp_path) == []


# -- torch.save(model): the modules' _metadata, without running the pickle ----------------

TINYNET_METADATA = {"": 1, "features": 1, "features.0": 1, "features.1": 2, "features.2": 1,
                    "features.3": 1, "features.4": 2, "features.5": 1, "pool": 1, "norm": 1,
                    "head": 1}  # TinyNet: Sequential(conv, BN, ReLU, conv, BN, ReLU), ...


def _no_unpickling(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("something tried to unpickle")

    for mod, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(mod, name, refuse)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_whole_model_export_carries_module_versions(tmp_path, monkeypatch, ext):
    src = SAMPLES / "tinynet_whole_model.pt"
    ckpt = open_checkpoint(str(src))
    assert ckpt.container().kind == "module" and ckpt.state_metadata is None
    _no_unpickling(monkeypatch)
    out = tmp_path / f"tiny{ext}"
    res = export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(out))
    monkeypatch.undo()
    assert res.verified
    want = {k: {"version": v} for k, v in TINYNET_METADATA.items()}
    if ext == ".pt":
        got = torch.load(out, weights_only=True)
        assert list(got._metadata.items()) == list(want.items())  # torch's order too
    else:
        with safe_open(str(out), "pt") as f:
            assert json.loads(f.metadata()["pttui.state_metadata"]) == want


def test_whole_model_versions_follow_renames_and_casts(tmp_path):
    ckpt = open_checkpoint(str(SAMPLES / "tinynet_whole_model.pt"))
    mapping = {"net." + k: (m._replace(dtype="float16") if m.dtype == "float32" else m)
               for k, m in ckpt.tensors.items()}
    export(ckpt, mapping, ckpt.tensors, str(tmp_path / "net.pt"))
    got = torch.load(tmp_path / "net.pt", weights_only=True)._metadata
    assert got == {("net." + k).rstrip("."): {"version": v} for k, v in TINYNET_METADATA.items()}


def _tiny_vit_model():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=2,
                                                num_heads=2, hidden_dim=8, mlp_dim=16,
                                                num_classes=3)


@pytest.mark.parametrize("build", ["resnet18", "vit", "nested"])
def test_whole_torchvision_models_get_torchs_own_metadata(tmp_path, build):
    """torch.save(model) of real torchvision models (BatchNorm: version 2, ViT MLPBlock:
    version 2); the export's _metadata is exactly model.state_dict()._metadata, and a
    fresh model loads the result strictly."""
    torchvision = pytest.importorskip("torchvision")
    if build == "resnet18":
        model = torchvision.models.resnet18(weights=None)
    else:
        model = _tiny_vit_model()
    path = tmp_path / "whole.pt"
    torch.save({"epoch": 3, "model": model} if build == "nested" else model, path)
    ckpt = open_checkpoint(str(path))
    assert ckpt.container().kind == "module"
    res = export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "out.pt"))
    assert res.verified
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    want = model.state_dict()
    assert list(got._metadata.items()) == list(want._metadata.items())
    fresh = torchvision.models.resnet18(weights=None) if build == "resnet18" else _tiny_vit_model()
    fresh.load_state_dict(got)
    assert all(torch.equal(fresh.state_dict()[k], want[k]) for k in want)


def test_module_version_table_matches_installed_torch_and_torchvision():
    from pttui.core.read.modversions import VERSIONS

    torchvision = pytest.importorskip("torchvision")
    import importlib

    for name in ("torch.ao.nn.quantized.dynamic", "torch.ao.nn.intrinsic.qat",
                 "torch.ao.nn.intrinsic.quantized.dynamic", "torch.ao.quantization",
                 "torchvision.models.detection", "torchvision.models.quantization",
                 "torchvision.ops"):
        importlib.import_module(name)

    def every(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    installed = {}
    for cls in every(torch.nn.Module):
        if cls.__module__.startswith(("torch.", "torchvision.")) and cls._version != 1:
            installed.setdefault(cls.__module__, {})[cls.__qualname__] = cls._version
    assert installed == VERSIONS, torchvision.__version__


def test_training_state_exports_without_unpickling(tmp_path, monkeypatch):
    """No torch.load, no pickle.load: the selected 'model' container goes out as is."""
    def refuse(*a, **kw):
        raise AssertionError("something tried to unpickle")

    for mod, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(mod, name, refuse)
    src = SAMPLES / "tiny_vit_training_state.pt"
    ckpt = open_checkpoint(str(src))
    assert ckpt.selected == ("model",) and ckpt.globals.blocked
    res = export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "model.pt"),
                 metadata=ckpt.state_metadata)
    assert res.verified and res.tensors == 32
    monkeypatch.undo()
    got = torch.load(tmp_path / "model.pt", weights_only=True)  # plain weights now
    assert set(got) == set(ckpt.tensors)
    assert isinstance(got._metadata, dict)


MEMORY_SCRIPT = r"""
import json, os, sys, threading, time
import psutil, torch
from pttui.core.read.reader import open_checkpoint
from pttui.core.export.export import export

src, folder = sys.argv[1], sys.argv[2]
proc = psutil.Process()
ckpt = open_checkpoint(src)
results = {}
for ext in (".pt", ".safetensors"):
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    th = threading.Thread(target=sample)
    th.start()
    res = export(ckpt, dict(ckpt.tensors), ckpt.tensors, os.path.join(folder, "out" + ext))
    stop.set()
    th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    assert res.verified
    results[ext] = peak[0] - base
print(json.dumps(results))
"""


def test_export_memory_stays_far_below_the_file_size(tmp_path):
    n, numel = 50, 1_000_000  # 50 x 4 MB = 200 MB of float32
    src = tmp_path / "big.pt"
    g = torch.Generator().manual_seed(0)
    torch.save({f"layer{i}.weight": torch.randn(numel, generator=g) for i in range(n)}, src)
    size = os.path.getsize(src)
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(src), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr[-2000:]
    growth = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"file {size / 2**20:.0f} MiB; peak RSS growth: "
          + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in growth.items()))
    for ext, grew in growth.items():
        assert grew < 0.5 * size, (ext, grew, size)


CAST_MEMORY_SCRIPT = r"""
import json, os, sys, threading, time
import torch
from pttui.core.export.export import export
from pttui.core.read.reader import open_checkpoint
from pttui.core.recipe.recipe import Cast, Recipe

src, folder, ext = sys.argv[1], sys.argv[2], sys.argv[3]

def anon():  # private memory: what a kept cast costs (mapped file pages do not count)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

cast = Recipe([Cast("bfloat16")])
warm = os.path.join(folder, "warm.pt")  # first-use imports and allocator set-up
torch.save({"w": torch.randn(1000)}, warm)
small = open_checkpoint(warm)
export(small, cast.apply(small.tensors), small.tensors, os.path.join(folder, "warm.out" + ext))
ckpt = open_checkpoint(src)
mapping = cast.apply(ckpt.tensors)
base = anon()
peak = [base]
stop = threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.002)

th = threading.Thread(target=sample)
th.start()
res = export(ckpt, mapping, ckpt.tensors, os.path.join(folder, "out" + ext))
stop.set()
th.join()
peak[0] = max(peak[0], anon())
print(json.dumps({"grew": peak[0] - base, "verified": res.verified, "cast": res.cast}))
"""


@pytest.fixture(scope="module")
def wide_resnet(tmp_path_factory):
    """torchvision's wide_resnet50_2 (weights=None): 263 MiB of float32, largest tensor
    36 MiB."""
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path_factory.mktemp("wrn") / "wrn50.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.wide_resnet50_2(weights=None).state_dict(), path)
    return path


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RssAnon (Linux)")
@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_cast_export_memory_stays_near_the_largest_tensor(tmp_path, wide_resnet, ext):
    """Casting holds one tensor at a time: private memory grows by about one cast tensor
    (18 MiB here), not by the whole cast output (132 MiB)."""
    ckpt = open_checkpoint(str(wide_resnet))
    largest_cast = max(m.numel for m in ckpt.tensors.values()) * 2  # bfloat16
    whole_cast = sum(m.numel * 2 for m in ckpt.tensors.values() if m.dtype == "float32")
    res = subprocess.run([sys.executable, "-c", CAST_MEMORY_SCRIPT, str(wide_resnet),
                          str(tmp_path), ext],
                         capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{ext}: cast output {whole_cast / 2**20:.0f} MiB, largest cast tensor "
          f"{largest_cast / 2**20:.0f} MiB; private memory grew {got['grew'] / 2**20:.1f} MiB")
    floats = sum(m.dtype == "float32" for m in ckpt.tensors.values())
    assert got["verified"] and got["cast"] == {"bfloat16": floats}
    assert got["grew"] < largest_cast + (16 << 20), got
    assert whole_cast > 3 * (largest_cast + (16 << 20))  # the bound tells the two apart
