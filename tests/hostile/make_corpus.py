"""Write the hostile corpus: crafted files, each with the outcome pttui must give.

    python tests/hostile/make_corpus.py OUTDIR

Deterministic: the same bytes on every run (no timestamps, no random ids). Each
entry records either ``exit 0`` with facts (format, keys, devices, dangerous
globals, notes) or ``exit 2`` with a substring of the one-line message; the
manifest goes to ``OUTDIR/corpus.json``. Payloads never run during a correct
read; if one does, it writes ``$PTTUI_MARKER_DIR/ran-*``. Classes are named from
the module ``pttui_hostile_mod`` (never installed; the test provides one that
leaves a marker when imported).
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import P, Rec, state_dict, storage, tensor, torch_zip, zip_bytes  # noqa: E402

MOD = "pttui_hostile_mod"  # the module every hostile class claims to live in


@dataclass
class Entry:
    name: str  # file or folder in OUTDIR
    covers: str  # the bullet
    exit: int
    message: str = ""  # exit 2: a substring of stderr's one line
    format: str = ""
    keys: list[str] | None = None  # exit 0: the selected container's keys, in order
    devices: list[str] | None = None
    dangerous: list[str] = field(default_factory=list)  # must all be listed as dangerous
    blocked: list[str] = field(default_factory=list)  # must all be listed as blocked
    notes: list[str] = field(default_factory=list)  # substrings of `pttui inspect` notes
    open: str = ""  # the path to inspect, relative to OUTDIR (default: name)
    torch_same: bool = False  # torch.load(weights_only=True) gives the same keys/shapes


def f32(*v: float) -> bytes:
    return struct.pack(f"<{len(v)}f", *v)


def touch(tag: str) -> str:
    """A shell command that leaves ``ran-TAG`` in the marker folder."""
    return f'touch "$PTTUI_MARKER_DIR/ran-{tag}"'


# Two small tensors: fc.weight (2, 3) and fc.bias (2,), storages "0" and "1".
W = tensor(storage("0", 6), 0, (2, 3), (3, 1))
B = tensor(storage("1", 2), 0, (2,), (1,))
LW = tensor(storage("0", 6, legacy=True), 0, (2, 3), (3, 1))  # the same, pre-1.6 style
LB = tensor(storage("1", 2, legacy=True), 0, (2,), (1,))
KEYS = ["fc.weight", "fc.bias"]
DATA = {"0": f32(*range(6)), "1": f32(0.5, -0.5)}


def good_pickle(proto: int = 2, extra: dict | None = None) -> bytes:
    return state_dict({"fc.weight": W, "fc.bias": B, **(extra or {})}, proto)


def good_zip(**kw) -> bytes:
    return zip_bytes(torch_zip(good_pickle(), DATA), **kw)


# -- zip structure ----------------------------------------------------------------------

def zip_entries() -> list[tuple[Entry, bytes]]:
    ok = dict(exit=0, format="torch-zip", keys=KEYS)
    out: list[tuple[Entry, bytes]] = []
    full = good_zip()
    out.append((Entry("valid.pt", "control", torch_same=True, **ok), full))
    out.append((Entry("zip_truncated.pt", "zip: truncated central directory", 2,
                      "zip directory is missing"), full[: len(full) * 2 // 3]))
    cd = full.find(b"PK\x01\x02")
    out.append((Entry("zip_no_central_directory.pt", "zip: missing central directory", 2,
                      "zip directory is missing"), full[:cd]))
    out.append((Entry("zip_cd_past_end.pt", "zip: directory offset past the end", 2,
                      "points past the end"), good_zip(cd_offset_delta=1 << 20)))
    recs = [r for r in torch_zip(good_pickle(), DATA) if not r.name.endswith("data.pkl")]
    out.append((Entry("zip_no_data_pkl.pt", "zip: no data.pkl", 2, "no data.pkl"),
                zip_bytes(recs)))
    out.append((Entry("zip_no_version.pt", "zip: no version record",
                      notes=["no version record"], **ok),
                zip_bytes(torch_zip(good_pickle(), DATA, version=None))))
    root = [Rec(r.name.split("/", 1)[1], r.data) for r in torch_zip(good_pickle(), DATA)]
    out.append((Entry("zip_root_records.pt", "zip: files at the archive root", 2,
                      "archive root"), zip_bytes(root)))
    evil = state_dict({"fc.weight": W, "x": _system(touch("dup"))})
    recs = torch_zip(good_pickle(), DATA)
    recs.insert(1, Rec("archive/data.pkl", evil))
    out.append((Entry("zip_duplicate_data_pkl.pt", "zip: duplicate names", 2,
                      "ambiguous"), zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    recs.insert(1, Rec("archive/Data.pkl", evil))  # torch's lookup ignores case: it loads this
    out.append((Entry("zip_duplicate_by_case.pt", "zip: duplicate names (torch ignores case)",
                      2, "ambiguous"), zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    recs.append(Rec("archive/data/0", f32(9, 9, 9, 9, 9, 9)))
    out.append((Entry("zip_duplicate_storage.pt", "zip: duplicate storage record", 2,
                      "ambiguous"), zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    for r in recs:
        r.name = r.name.upper().replace("ARCHIVE/", "archive/")
    out.append((Entry("zip_upper_case_names.pt", "zip: names torch matches ignoring case",
                      torch_same=True, **ok), zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    recs[0].local_name = "archive/innocent.pkl"
    out.append((Entry("zip_local_name_differs.pt", "zip: local and central headers disagree",
                      notes=["local header names it"], torch_same=True, **ok),
                zip_bytes(recs)))
    blob = bytearray(good_zip())
    struct.pack_into("<L", blob, 22, 7)  # local header: uncompressed size 7
    out.append((Entry("zip_local_size_differs.pt", "zip: local and central sizes disagree",
                      notes=["local header says 7 bytes"], torch_same=True, **ok), bytes(blob)))
    recs = torch_zip(good_pickle(), DATA)
    recs[0].method = 8
    out.append((Entry("zip_deflated_pickle.pt", "zip: deflated records (data.pkl)",
                      notes=["data.pkl is compressed"], torch_same=True, **ok), zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    for r in recs:
        if "/data/" in r.name:
            r.method = 8
    out.append((Entry("zip_deflated_storages.pt", "zip: deflated records (storages)",
                      notes=["2 storage records are compressed"], torch_same=True, **ok),
                zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    recs[0].flags = 1
    out.append((Entry("zip_encrypted.pt", "zip: encrypted records", 2, "encrypted"),
                zip_bytes(recs)))
    recs = torch_zip(good_pickle(), DATA)
    recs[0].method = 12
    out.append((Entry("zip_bzip2_pickle.pt", "zip: unsupported compression", 2, "method 12"),
                zip_bytes(recs)))
    recs = [Rec(r.name, r.data, zip64=True) for r in torch_zip(good_pickle(), DATA)]
    out.append((Entry("zip64.pt", "zip: zip64 offsets", torch_same=True, **ok),
                zip_bytes(recs, zip64_eocd=True)))
    recs = [Rec(r.name, r.data, zip64=True) for r in torch_zip(good_pickle(), DATA)]
    blob = bytearray(zip_bytes(recs, zip64_eocd=True))
    loc = blob.rfind(b"PK\x06\x07")
    struct.pack_into("<Q", blob, loc + 8, 1 << 60)
    out.append((Entry("zip64_bad_locator.pt", "zip: zip64 offset out of range", 2,
                      "zip64 directory pointer is out of range"), bytes(blob)))
    extra = [Rec("archive/data/../x", b"zz"), Rec("archive/../../etc/passwd", b"root"),
             Rec("archive/data/../data.pkl", evil)]
    out.append((Entry("zip_dotdot_names.pt", "zip: entry names like data/../x",
                      torch_same=True, **ok),
                zip_bytes(torch_zip(good_pickle(), DATA, extra=extra))))
    out.append((Entry("zip_record_outside_folder.pt", "zip: a record outside the archive folder",
                      notes=["not in the archive folder"], **ok),
                zip_bytes(torch_zip(good_pickle(), DATA, extra=[Rec("/abs/data.pkl", evil)]))))
    legacy = legacy_file({"fc.weight": LW, "fc.bias": LB}, DATA)
    out.append((Entry("polyglot_legacy_then_zip.pt", "zip: pickle with a zip appended",
                      0, format="torch-legacy", keys=KEYS, torch_same=True),
                legacy + zip_bytes(torch_zip(evil, DATA))))
    out.append((Entry("legacy_five_field_storage_id.pt", "storage: a zip-style 5-field id "
                      "in a legacy stream", 2, "has 5 fields where a legacy checkpoint has 6"),
                legacy_file({"fc.weight": W, "fc.bias": B}, DATA)))
    out.append((Entry("polyglot_pickle_then_zip.pt", "zip: plain pickle with a zip appended",
                      2, "torch.save did not write"),
                P(2).call("posix", "system", touch("polyglot")).bytes() + full))
    out.append((Entry("zip_then_trailing_pickle.pt", "zip: a pickle after the archive",
                      torch_same=True, **ok), full + evil))
    return out


def _system(cmd: str):
    return lambda p: p.call("posix", "system", cmd)


def legacy_file(entries: dict, data: dict[str, bytes]) -> bytes:
    """A pre-1.6 torch.save stream: header pickles, the object, the key list, storages."""
    from craft import legacy_header

    body = state_dict(entries)
    keys = P(2).raw(b"]").mark()
    for k in data:
        keys.str(k)
    out = legacy_header() + body + keys.raw(b"e").bytes()
    for _k, raw in data.items():
        out += struct.pack("<q", len(raw) // 4) + raw
    return out


# -- storages ---------------------------------------------------------------------------

def storage_entries() -> list[tuple[Entry, bytes]]:
    def one(name, covers, t, data=None, keys=("w",), notes=(), devices=None, exit_=0,
            message="", tie=True):
        pkl = state_dict({"w": t, **({"fc.bias": B} if tie else {})})
        entry = Entry(name, covers, exit_, message, "torch-zip" if exit_ == 0 else "",
                      ([*keys, "fc.bias"] if tie else list(keys)) if exit_ == 0 else None,
                      devices, notes=list(notes))
        return entry, zip_bytes(torch_zip(pkl, data or {"0": f32(*range(6)), "1": DATA["1"]}))

    return [
        one("storage_numel_past_record.pt", "storage: numel larger than the record",
            tensor(storage("0", 1000), 0, (1000,), (1,)),
            notes=["declares 4,000 bytes but its record holds 24"]),
        one("storage_view_past_end.pt", "storage: view beyond the storage",
            tensor(storage("0", 6), 4, (2, 3), (3, 1)), notes=["reaches past the storage"]),
        one("storage_negative_shape.pt", "storage: negative shape",
            tensor(storage("0", 6), 0, (-2, 3), (3, 1)), keys=(), notes=["invalid offset, shape"]),
        one("storage_huge_shape.pt", "storage: huge shape",
            tensor(storage("0", 6), 0, (1 << 40, 1 << 40), (1 << 40, 1)), keys=(),
            notes=["more elements than torch can address"]),
        one("storage_huge_stride.pt", "storage: huge stride",
            tensor(storage("0", 6), 0, (2,), (1 << 62,)), notes=["reaches past the storage"]),
        one("storage_giant_int_dim.pt", "storage: a 5,000-digit dimension",
            tensor(storage("0", 6), 0, (10 ** 5000,), (1,)), keys=(), notes=["invalid offset, shape"]),
        one("storage_negative_stride.pt", "storage: negative stride",
            tensor(storage("0", 6), 0, (2,), (-1,)), keys=(), notes=["invalid offset, shape"]),
        one("storage_unknown_dtype.pt", "storage: unknown dtype", _v3("float99"), keys=(),
            notes=["unknown dtype torch.float99"]),
        one("storage_unknown_type.pt", "storage: unknown storage type",
            tensor(storage("0", 6, stype="Float99Storage"), 0, (6,), (1,)), exit_=2,
            message="unknown type torch.Float99Storage"),
        one("storage_missing_record.pt", "storage: key pointing to a missing record",
            tensor(storage("7", 6), 0, (6,), (1,)), notes=["data record is missing"]),
        one("storage_id_six_fields_in_zip.pt", "storage: a legacy 6-field id in a zip",
            tensor(storage("0", 6, legacy=True), 0, (6,), (1,)), exit_=2,
            message="has 6 fields where a zip checkpoint has 5"),
        one("location_cuda7.pt", "storage: location cuda:7",
            tensor(storage("0", 6, "cuda:7"), 0, (6,), (1,)), devices=["cuda:7"], tie=False),
        one("location_xla.pt", "storage: location xla",
            tensor(storage("0", 6, "xla"), 0, (6,), (1,)), devices=["xla"], tie=False),
        one("location_mps.pt", "storage: location mps",
            tensor(storage("0", 6, "mps"), 0, (6,), (1,)), devices=["mps"], tie=False),
        one("location_garbage.pt", "storage: garbage location with escape codes",
            tensor(storage("0", 6, "\x1b]0;pwned\x07;rm -rf ~\n"), 0, (6,), (1,)),
            devices=["\\x1b]0;pwned\\x07;rm -rf ~\\n"],
            notes=["a location with control characters"], tie=False),
        one("location_megabyte.pt", "storage: a 1 MB location string",
            tensor(storage("0", 6, "cuda:" + "9" * (1 << 20)), 0, (6,), (1,)),
            devices=["cuda:" + "9" * 35 + "…"], notes=["location of 1,048,581 characters"],
            tie=False),
    ]


def _v3(dtype: str):
    """``_rebuild_tensor_v3(storage, 0, (6,), (1,), False, {}, torch.<dtype>)``."""
    def emit(p: P) -> None:
        p.glob("torch._utils", "_rebuild_tensor_v3").mark()
        storage("0", 6, stype="UntypedStorage")(p)
        p.value(0).value((6,)).value((1,)).value(False)
        p.glob("collections", "OrderedDict").raw(b")").reduce()
        p.glob("torch", dtype).tuple().reduce()
    return emit


def build(outdir: str) -> list[Entry]:
    """Write every corpus file under ``outdir``; return the entries (also in corpus.json)."""
    from corpus_formats import format_entries
    from corpus_pickles import pickle_entries

    os.makedirs(outdir, exist_ok=True)
    entries: list[Entry] = []
    for entry, content in (zip_entries() + storage_entries() + pickle_entries()
                           + format_entries()):
        _write(os.path.join(outdir, entry.name), content)
        entries.append(entry)
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "corpus names must be unique"
    with open(os.path.join(outdir, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump([asdict(e) for e in entries], f, indent=1, ensure_ascii=True)
    return entries


def _write(path: str, content: bytes | dict) -> None:
    """bytes: a file. dict: a folder of relative path -> bytes."""
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
        return
    for rel, data in content.items():
        _write_nested(os.path.join(path, rel), data)


def _write_nested(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTDIR")
    written = build(sys.argv[1])
    print(f"{len(written)} corpus entries written to {sys.argv[1]}")
