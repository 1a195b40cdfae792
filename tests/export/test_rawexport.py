"""Exports that copy stored bytes (no torch): what torch reads back, ties, views, zip64,
failures that leave nothing, and no torch import at all."""

from __future__ import annotations

import collections
import errno
import os
import subprocess
import sys
import zipfile

import pytest
import torch
from safetensors.torch import load_file

import pttui.core.export.export as export_mod
import pttui.core.export.raw as raw
from pttui.core.export import torchzip_write as tz
from pttui.core.export.export import export
from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint

from tests.helpers import ROOT, SAMPLES
from tests.read.test_tensordata import same_bits

VIT = SAMPLES / "tiny_vit.safetensors"


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if "pttui-partial" in n)


@pytest.fixture
def used(monkeypatch):
    """Records whether an export went through rawexport.write."""
    calls = []
    real = raw.write

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(raw, "write", spy)
    return calls


def both_ways(tmp_path, src, ext, mapping=None, monkeypatch=None, **kw):
    """Export by copying bytes and through torch; return both outputs."""
    ckpt = open_checkpoint(str(src))
    m = dict(ckpt.tensors) if mapping is None else mapping
    a, b = tmp_path / f"raw{ext}", tmp_path / f"torch{ext}"
    export(ckpt, m, ckpt.tensors, str(a), **kw)
    monkeypatch.setattr(export_mod, "COPY_BYTES", False)
    export(ckpt, m, ckpt.tensors, str(b), **kw)
    monkeypatch.setattr(export_mod, "COPY_BYTES", True)
    return a, b


def load(path, **kw):
    return load_file(path) if str(path).endswith(".safetensors") else torch.load(
        path, weights_only=True, **kw)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
@pytest.mark.parametrize("sample", ["tiny_vit.safetensors", "tiny_vit_cuda.pt",
                                    "tiny_vit_legacy.pt", "tiny_vit_training_state.pt",
                                    "tiny_vit_sharded/model.safetensors.index.json",
                                    "squeezenet1_1.pt"])
def test_same_as_through_torch(tmp_path, monkeypatch, used, sample, ext):
    a, b = both_ways(tmp_path, SAMPLES / sample, ext, monkeypatch=monkeypatch,
                     metadata=open_checkpoint(str(SAMPLES / sample)).state_metadata)
    assert used == [1]
    got, ref = load(a), load(b)
    assert list(got) == list(ref)
    assert all(same_bits(got[k], ref[k]) and got[k].stride() == ref[k].stride() for k in ref)
    if ext == ".pt":
        assert getattr(got, "_metadata", None) == getattr(ref, "_metadata", None)
        assert zipfile.ZipFile(a).testzip() is None  # every CRC-32 right
        mm = torch.load(a, weights_only=True, mmap=True)  # records 64-byte aligned
        assert all(same_bits(mm[k], ref[k]) for k in ref)
    assert leftovers(tmp_path) == []


def test_ties_and_views_stay_as_torch_save_keeps_them(tmp_path, monkeypatch, used):
    x = torch.arange(24, dtype=torch.float32).view(4, 6)
    sd = collections.OrderedDict([("w", x), ("tied", x), ("row", x[1]), ("t", x.t()),
                                  ("b", torch.ones(3, dtype=torch.bfloat16))])
    src = tmp_path / "src.pt"
    torch.save(sd, src)
    a, b = both_ways(tmp_path, src, ".pt", monkeypatch=monkeypatch)
    got = torch.load(a, weights_only=True)
    assert used == [1]
    assert got["w"].untyped_storage().data_ptr() == got["tied"].untyped_storage().data_ptr()
    assert got["row"].storage_offset() == 6 and got["t"].stride() == (1, 6)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert len([n for n in zipfile.ZipFile(a).namelist() if "/data/" in n]) == 2


def test_a_damaged_record_keeps_its_checksum(tmp_path, used):
    """A record copied whole keeps the source's CRC-32: a byte damaged in the source (a
    bad download) stays detectable in the export instead of getting a valid checksum."""
    torch.save({"w": torch.arange(64, dtype=torch.float32), "b": torch.ones(4)},
               tmp_path / "src.pt")
    src = zipfile.ZipFile(tmp_path / "src.pt")
    w = next(i for i in src.infolist() if i.filename.endswith("/data/0"))
    blob = bytearray((tmp_path / "src.pt").read_bytes())
    nlen, xlen = int.from_bytes(blob[w.header_offset + 26:w.header_offset + 28], "little"), \
        int.from_bytes(blob[w.header_offset + 28:w.header_offset + 30], "little")
    start = w.header_offset + 30 + nlen + xlen  # the local header's extra pads to 64 bytes
    blob[start + 5] ^= 0xFF  # one byte of w's values, its CRC-32 left as it was
    (tmp_path / "damaged.pt").write_bytes(bytes(blob))
    assert zipfile.ZipFile(tmp_path / "damaged.pt").testzip() == w.filename
    ckpt = open_checkpoint(str(tmp_path / "damaged.pt"))
    export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "out.pt"))
    assert used == [1]
    out = zipfile.ZipFile(tmp_path / "out.pt")
    bad = out.testzip()
    assert bad is not None and bad.endswith("/data/0")
    assert torch.load(tmp_path / "out.pt", weights_only=True, mmap=True)["w"][1] != 1.0


def test_non_contiguous_to_safetensors_goes_through_torch(tmp_path, used):
    x = torch.arange(24, dtype=torch.float32).view(4, 6)
    torch.save({"t": x.t(), "w": x}, tmp_path / "src.pt")
    ckpt = open_checkpoint(str(tmp_path / "src.pt"))
    export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "out.safetensors"))
    assert used == []
    got = load_file(tmp_path / "out.safetensors")
    assert torch.equal(got["t"], x.t()) and torch.equal(got["w"], x)


def test_zip64_records_read_by_torch_zipfile_and_pttui(tmp_path, monkeypatch):
    real = tz.ZipWriter.__init__

    def forced(self, fd, force_zip64=False):
        real(self, fd, True)

    monkeypatch.setattr(tz.ZipWriter, "__init__", forced)
    ckpt = open_checkpoint(str(VIT))
    out = tmp_path / "out.pt"
    export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(out))
    ref = load_file(VIT)
    for got in (torch.load(out, weights_only=True), torch.load(out, weights_only=True,
                                                                mmap=True)):
        assert all(same_bits(got[k], ref[k]) for k in ref)
    assert zipfile.ZipFile(out).testzip() is None
    assert len(open_checkpoint(str(out)).tensors) == len(ref)


def test_casts_go_through_torch(tmp_path, used):
    ckpt = open_checkpoint(str(VIT))
    mapping = {k: t._replace(dtype="float16") if t.dtype == "float32" else t
               for k, t in ckpt.tensors.items()}
    export(ckpt, mapping, ckpt.tensors, str(tmp_path / "out.pt"))
    assert used == []


def test_failed_comparison_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(raw, "_compare_one", lambda *a, **kw: "bytes at offset 64 differ")
    ckpt = open_checkpoint(str(VIT))
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="verification .* failed: bytes at offset 64"):
        export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(out))
    assert not out.exists() and leftovers(tmp_path) == []


def test_failed_read_back_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(raw, "check", lambda *a: ["x: its record is not where its bytes were"])
    ckpt = open_checkpoint(str(VIT))
    out = tmp_path / "out.safetensors"
    with pytest.raises(ReadError, match="verification .* failed: x: its record"):
        export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(out))
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["copy_file_range", "pwrite"])
def test_disk_full_while_copying_leaves_nothing(tmp_path, monkeypatch, where):
    calls = []
    real = getattr(os, where)

    def full(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    if where == "pwrite":  # the fallback copy, as on filesystems without copy_file_range
        monkeypatch.delattr(os, "copy_file_range")
    monkeypatch.setattr(os, where, full)
    ckpt = open_checkpoint(str(VIT))
    out = tmp_path / "out.pt"
    with pytest.raises(ReadError, match="disk is full"):
        export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(out))
    assert not out.exists() and leftovers(tmp_path) == []


def test_no_kernel_copy_falls_back(tmp_path, monkeypatch):
    def unsupported(*a, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    ckpt = open_checkpoint(str(VIT))
    export(ckpt, dict(ckpt.tensors), ckpt.tensors, str(tmp_path / "out.pt"))
    ref = load_file(VIT)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert all(same_bits(got[k], ref[k]) for k in ref)


def test_copying_bytes_never_imports_torch(tmp_path):
    code = (
        "import sys\n"
        "from pttui.core.read.reader import open_checkpoint\n"
        "from pttui.core.export.export import export\n"
        f"c = open_checkpoint({str(VIT)!r})\n"
        "m = {k.replace('blocks', 'layers'): t for k, t in c.tensors.items()}\n"
        f"for ext in ('pt', 'safetensors'):\n"
        f"    export(c, m, c.tensors, {str(tmp_path)!r} + '/out.' + ext)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert set(got) == set(load_file(tmp_path / "out.safetensors"))


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_everything_dropped_writes_an_empty_file(tmp_path, ext):
    ckpt = open_checkpoint(str(VIT))
    res = export(ckpt, {}, ckpt.tensors, str(tmp_path / f"out{ext}"))
    assert res.tensors == 0 and load(tmp_path / f"out{ext}") == {}
