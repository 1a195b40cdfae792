"""TensorSource gives the tensors torch.load gives, bit for bit, without unpickling."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint
from pttui.core.read.tensordata import BIG_ENDIAN_NOTE, TensorSource, as_bytes, checksum

from tests.helpers import SAMPLES

VIT = SAMPLES / "tiny_vit.safetensors"


def flatten(obj, prefix=""):
    """Dotted key -> tensor, the way pttui names container entries."""
    join = (lambda k: f"{prefix}.{k}" if prefix else str(k))
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict().items():
            yield join(k), v
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, join(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, join(i))


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return (x.dtype == y.dtype and x.shape == y.shape
            and torch.equal(as_bytes(x), as_bytes(y)))


def read_all(path, ckpt=None):
    """Full dotted key (container path + key) -> tensor, for every container."""
    ckpt = ckpt or open_checkpoint(str(path))
    out = {}
    with TensorSource(ckpt) as src:
        for c in ckpt.containers:
            for k, meta in c.tensors.items():
                out[".".join(c.path + (k,))] = src.read(meta)
    return ckpt, out


def assert_matches(ours: dict, theirs: dict, strides: bool = True):
    assert ours, "no tensors read"
    missing = [k for k in ours if k not in theirs]
    assert not missing, missing[:5]
    for k, t in ours.items():
        ref = theirs[k]
        assert same_bits(t, ref), k
        assert t.device.type == "cpu"
        if strides:
            assert t.stride() == ref.stride(), k


TORCH_WEIGHTS_ONLY = ["squeezenet1_1.pt", "squeezenet1_1_dataparallel.pt",
                      "squeezenet1_1_compiled.pt", "squeezenet1_1_finetuned_10cls.pt",
                      "tiny_vit_lightning.ckpt", "tiny_vit_renamed.pt", "tiny_vit_cuda.pt",
                      "tiny_vit_legacy.pt", "tiny_vit_optimizer_only.pt"]


@pytest.mark.parametrize("name", TORCH_WEIGHTS_ONLY)
def test_torch_samples_match_torch_load(name):
    path = SAMPLES / name
    _, ours = read_all(path)
    theirs = dict(flatten(torch.load(path, map_location="cpu", weights_only=True)))
    assert_matches(ours, theirs)


def test_cuda_sample_reads_on_cpu():
    ckpt, ours = read_all(SAMPLES / "tiny_vit_cuda.pt")
    assert {t.device for t in ckpt.tensors.values()} == {"cuda:0"}
    ref = load_file(VIT)
    assert all(same_bits(ours[k], ref[k]) for k in ref)


def test_safetensors_sample():
    _, ours = read_all(VIT)
    assert_matches(ours, load_file(VIT), strides=False)


def test_sharded_safetensors():
    folder = SAMPLES / "tiny_vit_sharded"
    theirs = {}
    for shard in folder.glob("*.safetensors"):
        theirs.update(load_file(shard))
    _, ours = read_all(folder / "model.safetensors.index.json")
    assert_matches(ours, theirs, strides=False)
    assert set(ours) == set(load_file(VIT))


def test_sharded_bin():
    folder = SAMPLES / "tiny_vit_sharded_bin"
    theirs = {}
    for shard in folder.glob("*.bin"):
        theirs.update(torch.load(shard, map_location="cpu", weights_only=True))
    _, ours = read_all(folder / "pytorch_model.bin.index.json")
    assert_matches(ours, theirs)


def test_torchscript():
    path = SAMPLES / "tiny_vit_torchscript.pt"
    _, ours = read_all(path)
    theirs = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    assert_matches(ours, theirs)


def test_dcp_folder_holds_the_safetensors_weights():
    ckpt, ours = read_all(SAMPLES / "tiny_vit_dcp")
    assert ckpt.format == "dcp"
    assert_matches(ours, load_file(VIT), strides=False)


def test_malicious_sample_reads_without_running(tmp_path, monkeypatch):
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    _, ours = read_all(SAMPLES / "malicious.pt")
    ref = load_file(VIT)
    assert all(same_bits(ours[f"state_dict.{k}"], ref[k]) for k in ref)
    assert os.listdir(tmp_path) == []


CHECKSUMS = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[2])
obj = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
from tests.read.test_tensordata import flatten
from pttui.core.read.tensordata import checksum
print(json.dumps({k: [checksum(t), str(t.dtype), list(t.shape)] for k, t in flatten(obj)}))
"""


@pytest.mark.parametrize("name", ["tinynet_whole_model.pt", "tiny_vit_training_state.pt"])
def test_full_pickle_samples_match_a_subprocess_load(name, tmp_path):
    """These need weights_only=False: torch loads them in a throwaway process."""
    path = SAMPLES / name
    env = {**os.environ, "PTTUI_SAMPLE_MARKER_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", CHECKSUMS, str(path), str(SAMPLES)],
                         capture_output=True, text=True, env=env, check=True,
                         cwd=str(SAMPLES.parent))
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    _, ours = read_all(path)
    assert ours and set(ours) <= set(theirs)
    for k, t in ours.items():
        assert [checksum(t), str(t.dtype), list(t.shape)] == theirs[k], k


def test_views_and_tied_weights_share_memory(tmp_path):
    base = torch.arange(24, dtype=torch.float32)
    grid = base.view(4, 6)
    sd = {"base": base, "tied": base, "slice": base[5:11], "grid_t": grid.t(),
          "col": grid[:, 2], "other": torch.ones(3)}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    ckpt, ours = read_all(path)
    assert_matches(ours, torch.load(path, weights_only=True))
    ptr = ours["base"].untyped_storage().data_ptr()
    for k in ("tied", "slice", "grid_t", "col"):
        assert ours[k].untyped_storage().data_ptr() == ptr, k
    assert ours["other"].untyped_storage().data_ptr() != ptr
    with TensorSource(ckpt) as src:  # one storage per record, also across reads
        a, b = src.read(ckpt.tensors["base"]), src.read(ckpt.tensors["slice"])
        assert a.untyped_storage()._cdata == b.untyped_storage()._cdata


ODD_DTYPES = [torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16, torch.bool,
              torch.uint16, torch.uint32, torch.int8, torch.complex64, torch.float64,
              torch.int64, torch.float16]


def _odd_tensors():
    g = torch.Generator().manual_seed(0)
    out = {}
    for dt in ODD_DTYPES:
        x = torch.randn(5, 7, generator=g) * 10
        out[str(dt).removeprefix("torch.")] = (
            (x > 0) if dt == torch.bool else x.abs().to(dt) if dt in (torch.uint16, torch.uint32)
            else torch.complex(x, -x).to(dt) if dt.is_complex else x.to(dt))
    return out


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_dtypes_bit_for_bit(tmp_path, fmt):
    sd = _odd_tensors()
    path = tmp_path / f"odd.{fmt}"
    if fmt == "safetensors":
        sd = {k: v for k, v in sd.items() if k not in ("complex64",)}
        save_file(sd, path)
    elif fmt == "legacy":  # typed storages only exist for the classic dtypes
        sd = {k: v for k, v in sd.items() if not k.startswith(("float8", "uint"))}
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(sd, path)
    ckpt, ours = read_all(path)
    assert ckpt.format == {"zip": "torch-zip", "legacy": "torch-legacy"}.get(fmt, fmt)
    assert_matches(ours, sd, strides=False)
    assert set(ours) == set(sd)


def test_sub_byte_dtype(tmp_path):
    x = torch.arange(16, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    path = tmp_path / "fp4.pt"
    try:
        torch.save({"x": x}, path)
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"this torch cannot save float4: {err}")
    _, ours = read_all(path)
    assert ours["x"].dtype == torch.float4_e2m1fn_x2
    assert torch.equal(as_bytes(ours["x"]), torch.arange(16, dtype=torch.uint8))


def test_legacy_unaligned_storages_are_copied_aligned(tmp_path):
    sd = {"a": torch.randn(3, dtype=torch.float64), "b": torch.arange(5),
          "c": torch.randn(4, 4).t(), "h": torch.randn(7).half()}
    path = tmp_path / "legacy.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    ckpt, ours = read_all(path)
    offsets = [ckpt.storage_offsets[m.storage.key] for m in ckpt.tensors.values()]
    assert any(o % 8 for o in offsets), "want at least one unaligned record"
    assert_matches(ours, torch.load(path, weights_only=True))
    for t in ours.values():
        assert t.data_ptr() % t.element_size() == 0


def _to_big_endian(src, dst):
    """Rewrite a torch zip as a big-endian machine would have saved it."""
    sd = torch.load(src, weights_only=True)
    ckpt = open_checkpoint(str(src))
    sizes = {m.storage.key: torch.tensor([], dtype=getattr(torch, m.storage.dtype))
             .element_size() for m in ckpt.tensors.values()}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            name = info.filename
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name and name.rsplit("/", 1)[1] in sizes:
                k = sizes[name.rsplit("/", 1)[1]]
                data = bytes(torch.frombuffer(bytearray(data), dtype=torch.uint8)
                             .view(-1, k).flip(-1).reshape(-1).numpy()) if k > 1 else data
            zout.writestr(name, data)
    return sd


def test_big_endian_file(tmp_path):
    src, dst = tmp_path / "le.pt", tmp_path / "be.pt"
    torch.save({"w": torch.randn(3, 4), "i": torch.arange(6, dtype=torch.int16),
                "d": torch.randn(2, dtype=torch.float64), "b": torch.tensor([1, 2],
                                                                           dtype=torch.uint8)},
               src)
    sd = _to_big_endian(src, dst)
    ckpt, ours = read_all(dst)
    assert BIG_ENDIAN_NOTE in ckpt.notes
    assert_matches(ours, sd)


@pytest.mark.parametrize("make,kind", [
    (lambda: torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8), "quantized"),
    (lambda: torch.randn(3, 3).to_sparse(), "sparse"),
    (lambda: torch.empty(2, 3, device="meta"), "meta"),
])
def test_unrebuildable_kinds_name_the_key(tmp_path, make, kind):
    path = tmp_path / "odd.pt"
    torch.save({"plain": torch.ones(2), "odd": make()}, path)
    ckpt = open_checkpoint(str(path))
    with TensorSource(ckpt) as src:
        assert torch.equal(src.read(ckpt.tensors["plain"]), torch.ones(2))
        with pytest.raises(ReadError, match=rf"odd: a {kind} tensor"):
            src.read(ckpt.tensors["odd"])


def test_hostile_dcp_metadata_is_refused_not_run(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "ckpt"
    dcp.save({"w": torch.ones(3)}, checkpoint_id=str(folder), no_dist=True)
    marker = tmp_path / "ran"
    with open(folder / ".metadata", "rb") as f:
        md = pickle.load(f)  # our own, trusted

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    md.planner_data = Payload()
    with open(folder / ".metadata", "wb") as f:
        pickle.dump(md, f)
    ckpt = open_checkpoint(str(folder))
    with TensorSource(ckpt) as src, pytest.raises(ReadError, match="will not unpickle"):
        src.read(ckpt.tensors["w"])
    assert not marker.exists()


def test_checksum_depends_on_values_not_layout():
    x = torch.randn(4, 5)
    assert checksum(x.t()) == checksum(x.t().contiguous())
    assert checksum(x) != checksum(x + 1)
    assert len(checksum(torch.empty(0))) == 32


def test_reads_are_zero_copy(tmp_path):
    path = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(1 << 20)}, path)
    ckpt = open_checkpoint(str(path))
    with TensorSource(ckpt) as src:
        a = src.read(ckpt.tensors["w"])
        b = src.read(ckpt.tensors["w"])
        assert a.data_ptr() == b.data_ptr()
        a.add_(1)  # private mapping: the file is untouched
    assert torch.equal(load_file(path)["w"], torch.zeros(1 << 20))
