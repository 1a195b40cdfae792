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

import pttui.core.export as export_mod
from pttui.core.export import ExportCancelled, export
from pttui.core.meta import ReadError
from pttui.core.reader import open_checkpoint

from .helpers import ROOT, SAMPLES
from .test_tensordata import same_bits

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


def test_state_dict_metadata_survives_in_pt(tmp_path):
    src = SAMPLES / "squeezenet1_1.pt"
    out = tmp_path / "sq.pt"
    ckpt, res = run_export(src, out, metadata=open_checkpoint(str(src)).state_metadata)
    assert res.verified
    want = torch.load(src, weights_only=True)
    got = torch.load(out, weights_only=True)
    assert got._metadata == want._metadata
    assert all(same_bits(got[k], want[k]) for k in want)


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
    with pytest.raises(ReadError, match="already exists"):
        run_export(VIT, out)
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
    err = export_mod._os_error(OSError(code, os.strerror(code)), "/x/out.pt")
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


def test_disk_full_during_torch_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "COPY_BYTES", False)  # the torch path; test_rawexport.py covers the other
    real_save = torch.save

    def failing_save(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="disk is full"):
        run_export(VIT, out)
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
from pttui.core.reader import open_checkpoint
from pttui.core.export import export

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
