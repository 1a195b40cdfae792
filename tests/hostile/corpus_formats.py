"""Corpus entries for the other formats, safetensors, and files that are no checkpoint."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import warnings
import zipfile

from craft import Rec, state_dict, torch_zip, zip_bytes
from make_corpus import DATA, KEYS, B, W, Entry, good_zip, touch


def st(header, data: bytes = b"", n: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


def _t(off: int, n: int = 2, dtype: str = "F32") -> dict:
    return {"dtype": dtype, "shape": [n], "data_offsets": [off, off + 4 * n]}


def _legacy_tar(pickled: bytes | None = None, *, storages: bytes | None = None,
                tensors: bytes | None = None, extra: list | None = None) -> bytes:
    """A legacy tar checkpoint (PyTorch 0.1-0.3) holding fc.weight (2, 3) and fc.bias (2,),
    laid out as torch's legacy_load reads it; any member can be replaced."""
    from legacy_tar import SYS_INFO, object_pickle, storages_member, tar_of, tensors_member

    if storages is None:
        storages = storages_member([(1, 6, DATA["0"]), (2, 2, DATA["1"])])
    if tensors is None:
        tensors = tensors_member([(1001, 1, (2, 3), (3, 1), 0), (1002, 2, (2,), (1,), 0)])
    if pickled is None:
        pickled = object_pickle({"fc.weight": 1001, "fc.bias": 1002})
    return tar_of([("sys_info", SYS_INFO), ("pickle", pickled), ("tensors", tensors),
                   ("storages", storages), *(extra or [])])


def _legacy_tar_entries() -> list[tuple[Entry, bytes]]:
    from legacy_tar import object_pickle, storages_member, tar_of, tensors_member

    ok = dict(exit=0, format="torch-legacy-tar", keys=KEYS)
    good = _legacy_tar()
    out = [(Entry("legacy_tar.pt", "other: legacy tar (PyTorch 0.1-0.3)", **ok), good)]
    payload = object_pickle({"fc.weight": 1001, "fc.bias": 1002,
                             "x": lambda p: p.call("posix", "system", touch("tar"))})
    out.append((Entry("legacy_tar_payload.pt", "other: legacy tar whose pickle runs a command",
                      dangerous=["posix.system"], **ok), _legacy_tar(payload)))
    out.append((Entry("legacy_tar_garbage.pt", "other: legacy tar with garbage members", 2,
                      "legacy tar checkpoint"),
                _legacy_tar(storages=b"\0" * 16, tensors=b"\0" * 8)))
    huge = storages_member([(1, 1 << 40, DATA["0"]), (2, 2, DATA["1"])])
    out.append((Entry("legacy_tar_storage_overrun.pt", "other: legacy tar storage larger than "
                      "its member", 2, "more than its member holds"), _legacy_tar(storages=huge)))
    many = tensors_member([(1001, 1, (2, 3), (3, 1), 0)], count=1 << 40)
    out.append((Entry("legacy_tar_huge_count.pt", "other: legacy tar claiming 2^40 tensors", 2,
                      "count"), _legacy_tar(tensors=many)))
    cut = good[: good.find(b"storages\0") + 512 + 40]  # inside the storages member
    out.append((Entry("legacy_tar_truncated.pt", "other: legacy tar cut short", 2,
                      "truncated"), cut))
    out.append((Entry("legacy_tar_duplicate_member.pt", "other: legacy tar with two pickle "
                      "members", 2, "ambiguous"),
                _legacy_tar(extra=[("pickle", object_pickle({"fc.weight": 1001}))])))
    dangling = object_pickle({"fc.weight": 1001, "fc.bias": 1002, "ghost": 4242})
    out.append((Entry("legacy_tar_missing_tensor.pt", "other: legacy tar referencing a tensor "
                      "it does not hold", notes=["tensor 4242, which the file does not hold"],
                      **ok), _legacy_tar(dangling)))
    past = tensors_member([(1001, 1, (2, 3), (3, 1), 0), (1002, 2, (2, 9), (9, 1), 0)])
    out.append((Entry("legacy_tar_view_past_storage.pt", "other: legacy tar view beyond its "
                      "storage", notes=["reaches past"], **ok), _legacy_tar(tensors=past)))
    far = storages_member([(1, 6, DATA["0"]), (2, 2, DATA["1"])], location="cuda:0" + "x" * 6000)
    out.append((Entry("legacy_tar_long_location.pt", "other: legacy tar storage record of 6 KB "
                      "(a 6,000-character location)", notes=["names an odd location"], **ok),
                _legacy_tar(storages=far)))
    out.append((Entry("tar_not_torch.pt", "other: a tar that is no checkpoint", 2,
                      "not a legacy torch checkpoint"), tar_of([("README", b"hello\n")])))
    block = bytearray(tar_of([("x", b"")])[:512])
    out.append((Entry("tar_many_members.pt", "other: a tar of 10,001 empty members", 2,
                      "over 10,000 members"), bytes(block) * 10_001 + b"\0" * 1024))
    return out


def _torchscript() -> bytes:
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    buf = io.BytesIO()
    torch.jit.save(m, buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    return zip_bytes([Rec(i.filename, b"0" * 40 if i.filename.endswith("serialization_id")
                          else z.read(i)) for i in z.infolist()])


def _dcp_metadata(payload: bool) -> bytes:
    import torch
    from torch.distributed.checkpoint import metadata as m

    def tsm(shape):
        return m.TensorStorageMetadata(m.TensorProperties(dtype=torch.float32),
                                       torch.Size(shape),
                                       [m.ChunkStorageMetadata(torch.Size([0] * len(shape)),
                                                               torch.Size(shape))])
    md = m.Metadata(state_dict_metadata={"fc.weight": tsm([2, 3]), "fc.bias": tsm([2]),
                                         "step": m.BytesStorageMetadata()})
    if payload:
        md.planner_data = {"x": _Call()}
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(md)
    return buf.getvalue()


class _Call:
    """Pickles as ``posix.system(touch ...)``: a payload inside valid DCP metadata."""


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, _Call):
            return (os.system, (touch("dcp"),))
        return NotImplemented


def _deepspeed_ok() -> dict:
    sd = state_dict({"module": lambda p: p.dict().mark().str("fc.weight").value(W)
                     .str("fc.bias").value(B).setitems(), "global_steps": 5})
    return {"latest": b"global_step5\n",
            "global_step5/mp_rank_00_model_states.pt": zip_bytes(torch_zip(sd, DATA)),
            "global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt": b""}


def format_entries() -> list[tuple[Entry, object]]:
    out: list[tuple[Entry, object]] = []
    out += _legacy_tar_entries()
    out.append((Entry("torchscript.pt", "other: TorchScript", 0, format="torchscript",
                      keys=["0.weight", "0.bias"]), _torchscript()))
    out.append((Entry("dcp_ok", "other: DCP .metadata", 0, format="dcp", keys=KEYS),
                {".metadata": _dcp_metadata(False), "__0_0.distcp": b"\0" * 32}))
    out.append((Entry("dcp_payload", "other: DCP .metadata with a payload", 0, format="dcp",
                      keys=KEYS, dangerous=["posix.system"]),
                {".metadata": _dcp_metadata(True)}))
    out.append((Entry("dcp_garbage", "other: DCP .metadata that is garbage", 2, "pickle"),
                {".metadata": b"\x80\x04garbage" + bytes(range(256))}))
    out.append((Entry("dcp_not_metadata", "other: DCP .metadata holding a plain dict", 2,
                      "not a torch.distributed.checkpoint metadata file"),
                {".metadata": pickle.dumps({"a": 1}, 2)}))
    out.append((Entry("deepspeed_ok", "other: DeepSpeed folder", 0, format="torch-zip",
                      keys=KEYS, notes=["DeepSpeed folder"]), _deepspeed_ok()))
    out.append((Entry("deepspeed_outside", "other: DeepSpeed latest pointing outside", 2,
                      "outside its folder"),
                {"latest": b"../../../../../etc\n", "global_step1/mp_rank_00_model_states.pt":
                 good_zip()}))
    out.append((Entry("deepspeed_absolute", "other: DeepSpeed latest with an absolute path", 2,
                      "outside its folder"), {"latest": b"/etc\n"}))
    out += safetensors_entries()
    out += not_checkpoints()
    return out


def safetensors_entries() -> list[tuple[Entry, object]]:
    ok = dict(exit=0, format="safetensors")
    good = st({"fc.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
               "fc.bias": _t(24)}, DATA["0"] + DATA["1"])

    def bad(name, covers, message, blob):
        return Entry(name, covers, 2, message), blob
    return [
        (Entry("st_valid.safetensors", "safetensors: control", keys=KEYS, **ok), good),
        bad("st_header_2_40.safetensors", "safetensors: header length 2^40",
            "header claims 1,099,511,627,776 bytes", st({"a": _t(0)}, bytes(8), n=1 << 40)),
        bad("st_duplicate_offsets.safetensors", "safetensors: duplicate offsets", "overlaps",
            st({"a": _t(0), "b": _t(0)}, bytes(8))),
        bad("st_overlapping.safetensors", "safetensors: overlapping offsets", "overlaps",
            st({"a": _t(0), "b": _t(4)}, bytes(12))),
        (Entry("st_out_of_order.safetensors", "safetensors: out-of-order offsets",
               keys=["b", "a"], **ok), st({"b": _t(8), "a": _t(0)}, bytes(16))),
        bad("st_gap.safetensors", "safetensors: a gap between tensors", "gap",
            st({"a": _t(0), "b": _t(12)}, bytes(20))),
        bad("st_shorter.safetensors", "safetensors: file shorter than the header says",
            "shorter", st({"a": _t(0, 4)}, bytes(8))),
        bad("st_longer.safetensors", "safetensors: file longer than the header says",
            "longer", st({"a": _t(0)}, bytes(64))),
        bad("st_overflow_shape.safetensors", "safetensors: overflowing shape",
            "impossibly large", st({"a": {"dtype": "F32", "shape": [1 << 32, 1 << 32, 4],
                                          "data_offsets": [0, 0]}})),
        bad("st_nonstring_metadata.safetensors", "safetensors: non-string metadata",
            "__metadata__ must map strings", st({"__metadata__": {"epoch": 3}, "a": _t(0)},
                                                bytes(8))),
        bad("st_deep_json.safetensors", "safetensors: deeply nested header", "nests too deeply",
            st(b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        bad("st_nan.safetensors", "safetensors: NaN in the header", "not valid JSON",
            st(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": NaN}}',
               bytes(8))),
        bad("st_giant_number.safetensors", "safetensors: a 5,000-digit number",
            "not valid JSON", st(b'{"a": {"dtype": "F32", "shape": [1' + b"0" * 5000
                                 + b'], "data_offsets": [0, 8]}}', bytes(8))),
        bad("st_list_dtype.safetensors", "safetensors: a dtype that is a list", "unknown dtype",
            st({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, bytes(8))),
        bad("st_newline_name.safetensors", "safetensors: a name with a newline", "bad\\nname",
            st({"bad\nname": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}},
               bytes(8))),
        (Entry("st_index_outside", "safetensors: weight_map pointing outside its folder", 2,
               "outside its folder", open="st_index_outside/inner/model.safetensors.index.json"),
         {"inner/model.safetensors.index.json": json.dumps(
             {"weight_map": {"a": "../outside.safetensors"}}).encode(),
          "outside.safetensors": st({"a": _t(0)}, bytes(8))}),
        (Entry("st_index_absolute", "safetensors: weight_map with an absolute path", 2,
               "outside its folder", open="st_index_absolute/model.safetensors.index.json"),
         {"model.safetensors.index.json": json.dumps(
             {"weight_map": {"a": "/etc/hostname"}}).encode()}),
        (Entry("st_index_nul", "safetensors: weight_map with a NUL byte", 2, "invalid shard",
               open="st_index_nul/model.safetensors.index.json"),
         {"model.safetensors.index.json": json.dumps(
             {"weight_map": {"a": "x\u0000.safetensors"}}).encode()}),
        (Entry("st_index_self", "safetensors: weight_map naming the index itself", 2,
               "not a weights file", open="st_index_self/model.safetensors.index.json"),
         {"model.safetensors.index.json": json.dumps(
             {"weight_map": {"a": "model.safetensors.index.json"}}).encode()}),
        (Entry("st_index_ok", "safetensors: a valid sharded set", 0, format="sharded",
               keys=KEYS, open="st_index_ok/model.safetensors.index.json"),
         {"model.safetensors.index.json": json.dumps(
             {"metadata": {"total_size": 32}, "weight_map": {
                 "fc.weight": "a.safetensors", "fc.bias": "b.safetensors"}}).encode(),
          "a.safetensors": st({"fc.weight": {"dtype": "F32", "shape": [2, 3],
                                             "data_offsets": [0, 24]}}, DATA["0"]),
          "b.safetensors": st({"fc.bias": _t(0)}, DATA["1"])}),
    ]


def not_checkpoints() -> list[tuple[Entry, object]]:
    rng = random.Random(6)
    npy_header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
    npy_header += b" " * (63 - 10 - len(npy_header)) + b"\n"
    good_st = st({"fc.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                  "fc.bias": _t(24)}, DATA["0"] + DATA["1"])
    return [
        (Entry("empty.pt", "not: empty", 2, "the file is empty"), b""),
        (Entry("text.pt", "not: text", 2, "a text file"), b"epoch 3 loss 0.12\n" * 20),
        (Entry("html.pt", "not: an HTML error page", 2, "HTML page"),
         b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n"),
        (Entry("array.npy.pt", "not: .npy", 2, "NumPy"),
         b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header + bytes(8)),
        (Entry("plain_pickle.pt", "not: plain pickle", 2, "torch.save did not write"),
         pickle.dumps({"epoch": 3, "lr": 0.1}, 2)),
        (Entry("protocol0_payload.pt", "not: a protocol-0 pickle payload", 2,
               "torch.save did not write"),
         b"cposix\nsystem\n(S'" + touch("proto0").encode() + b"'\ntR."),
        (Entry("safetensors_renamed.pt", "not: safetensors renamed to .pt", 0,
               format="safetensors", keys=KEYS), good_st),
        (Entry("lfs_pointer.pt", "not: a Git LFS pointer", 2, "Git LFS"),
         b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64
         + b"\nsize 44739843\n"),
        (Entry("gzip.pt", "not: gzip", 2, "gzip"), b"\x1f\x8b\x08\x00" + bytes(20)),
        (Entry("random.pt", "not: random bytes", 2, "not a format pttui recognises"),
         bytes([0]) + bytes(rng.randrange(256) for _ in range(4095))),
        (Entry("zip_not_torch.pt", "not: an ordinary zip", 2, "archive root"),
         zip_bytes([Rec("readme.txt", b"hello")])),
        (Entry("npz.pt", "not: .npz", 2, "NumPy .npz"),
         zip_bytes([Rec("arr_0.npy", b"\x93NUMPY"), Rec("arr_1.npy", b"\x93NUMPY")])),
    ]

