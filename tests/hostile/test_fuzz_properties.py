"""Structured fuzzing in the normal suite: mutated zips, pickles and safetensors headers.

The property: ``open_checkpoint`` returns a Checkpoint (whose JSON serialises) or
raises ReadError with a one-line message. Anything else is a bug.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import P, Rec, storage, tensor, torch_zip, zip_bytes  # noqa: E402
from tokens import OPS, encode, tokens  # noqa: E402

from pttui.core.read.pickle import memoguard  # noqa: E402
from tests.helpers import session_temp_folder  # noqa: E402
from pttui.core.base.meta import ReadError  # noqa: E402
from pttui.core.read.reader import open_checkpoint  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_DIR = session_temp_folder("pttui-props-")


def _read(data: bytes, name: str = "x.pt") -> None:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(data)
    try:
        ckpt = open_checkpoint(path)
    except ReadError as err:
        assert "\n" not in str(err) and str(err).isprintable()
        return
    json.dumps(ckpt.to_json(), allow_nan=False)  # what `inspect --json` prints: strict JSON


def _valid_pickle() -> bytes:
    w = tensor(storage("0", 6), 0, (2, 3), (3, 1))
    b = tensor(storage("1", 2, "cuda:0"), 0, (2,), (1,))
    p = P(2).dict().mark().str("model").dict().mark().str("fc.weight").value(w)
    p.str("fc.bias").value(b).setitems().str("epoch").int(3).str("args")
    p.glob("argparse", "Namespace").raw(b")\x81").dict().mark().str("lr").int(1).setitems()
    p.raw(b"b")
    return p.setitems().bytes()


PICKLE = _valid_pickle()
DATA = {"0": bytes(24), "1": bytes(8)}
ZIP = zip_bytes(torch_zip(PICKLE, DATA))
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20]


@st.composite
def mutated(draw, base: bytes):
    """``base`` after a few edits: flips, overwrites with boundary integers, cuts, splices."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "int", "cut", "insert", "dup"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "int":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(INTERESTING)) % (1 << (8 * width))
            data[at:at + width] = value.to_bytes(width, "little")
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            n = draw(st.integers(1, 32))
            data[at:at] = data[at:at + n]
    return bytes(data)


@SETTINGS
@given(mutated(ZIP))
def test_mutated_zip(data):
    _read(data)


@SETTINGS
@given(mutated(PICKLE))
def test_mutated_pickle_inside_a_valid_zip(pkl):
    _read(zip_bytes(torch_zip(pkl, DATA)))


def _legacy_tar_members() -> list[tuple[str, bytes]]:
    from legacy_tar import SYS_INFO, object_pickle, storages_member, tensors_member

    return [("sys_info", SYS_INFO),
            ("pickle", object_pickle({"fc.weight": 1001, "fc.bias": 1002})),
            ("tensors", tensors_member([(1001, 1, (2, 3), (3, 1), 0), (1002, 2, (2,), (1,), 0)])),
            ("storages", storages_member([(1, 6, bytes(24)), (2, 2, bytes(8))]))]


def _tar_of(members):
    from legacy_tar import tar_of

    return tar_of(members)


TAR_MEMBERS = _legacy_tar_members()
TAR = _tar_of(TAR_MEMBERS)
_TAR_USED = len(TAR.rstrip(b"\0"))  # headers and members; the tar's zero padding follows


@SETTINGS
@given(mutated(TAR[:_TAR_USED]))
def test_mutated_legacy_tar(head):
    _read(head + TAR[_TAR_USED:])


@SETTINGS
@given(st.integers(0, len(TAR_MEMBERS) - 1), st.data())
def test_mutated_member_inside_a_valid_legacy_tar(which, data):
    """Headers stay valid (checksums recomputed): the member parsers see the mutation."""
    members = list(TAR_MEMBERS)
    name, body = members[which]
    members[which] = (name, data.draw(mutated(body)))
    _read(_tar_of(members))


_INTS = [0, 1, -1, 6, 255, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 63, -(2 ** 63), 2 ** 64, 10 ** 30,
         10 ** 5000]
_MEMO = [0, 1, 2, 255, 256, 70_000, 1 << 22, 1 << 24]  # past 1 << 21 memoguard refuses
_STRINGS = ["", "storage", "module", "cpu", "cuda:7", "meta", "0", "1", "9", "\x1b]0;x\x07",
            "a\nb", "\ud800", "x" * 5000, "_parameters", "_modules", "state_dict", "weight"]
_GLOBALS = ["torch FloatStorage", "torch Float99Storage", "os system", "torch float99",
            "torch._utils _rebuild_tensor_v3", "torch._utils _rebuild_parameter",
            "torch._utils _rebuild_meta_tensor_no_storage", "torch._tensor _rebuild_from_type_v2",
            "torch._utils _rebuild_sparse_tensor", "torch._utils _rebuild_qtensor",
            "torch device", "torch Size", "builtins bytearray", "builtins set",
            "collections OrderedDict", "numpy.core.multiarray scalar", "_codecs encode",
            "torch.nn.modules.linear Linear", "a.b c.d"]
_LITERALS = [("LONG4", 10 ** 5000), ("BININT", -1), ("BINUNICODE", "x" * 70), ("NONE", None),
             ("EMPTY_LIST", None), ("EMPTY_DICT", None), ("EMPTY_TUPLE", None),
             ("NEWTRUE", None), ("BINFLOAT", float("nan")), ("BINFLOAT", float("inf")),
             ("LONG_BINPUT", 1 << 22), ("STACK_GLOBAL", None), ("MARK", None), ("TUPLE", None),
             ("REDUCE", None), ("BUILD", None), ("APPENDS", None), ("SETITEMS", None),
             ("NEWOBJ", None), ("BINPERSID", None), ("POP", None), ("DUP", None)]


def _arg_pool(op):
    name = op.arg.name if op.arg else None
    if op.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "PUT", "GET"):
        return _MEMO
    if name == "stringnl_noescape_pair":
        return _GLOBALS
    if name and ("unicode" in name or name.startswith("string")):
        return _STRINGS
    if name and (name.startswith(("uint", "int", "long", "decimal"))):
        return _INTS
    return None


@st.composite
def token_mutants(draw):
    """The valid pickle with one to three token-level edits: an argument changed, a value
    replaced by another kind of value, an opcode inserted, tokens deleted or repeated."""
    toks = tokens(PICKLE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["arg", "arg", "value", "value", "insert", "delete", "dup"]))
        valued = [k for k, (op, _a) in enumerate(toks) if op.arg is not None and k > 0]
        i = draw(st.sampled_from(valued)) if kind in ("arg", "value") else draw(
            st.integers(1, len(toks) - 2))  # keep PROTO and STOP
        pool = _arg_pool(toks[i][0])
        if kind == "arg" and pool:
            toks[i] = (toks[i][0], draw(st.sampled_from(pool)))
        elif kind in ("value", "insert"):
            name, arg = draw(st.sampled_from(_LITERALS))
            if kind == "insert":
                toks.insert(i, (OPS[name], arg))
            else:
                toks[i] = (OPS[name], arg)
        elif kind == "delete":
            del toks[i]
        elif kind == "dup":
            j = draw(st.integers(i, min(len(toks) - 1, i + 12)))
            toks[j:j] = toks[i:j]
    return encode(toks)


def test_token_round_trip():
    assert encode(tokens(PICKLE)) == PICKLE


@SETTINGS
@given(token_mutants())
def test_pickle_token_mutations(pkl):
    _read(zip_bytes(torch_zip(pkl, DATA)))


def _plain_sd(keys: list[str], numel: int) -> bytes:
    p = P(2).dict().mark()
    for i, k in enumerate(keys):
        p.str(k).value(tensor(storage(str(i), numel), 0, (numel,), (1,)))
    return p.setitems().bytes()


SD_A = _plain_sd(["fc.weight", "fc.bias"], 2)  # what the archive says
SD_B = _plain_sd(["evil.weight"], 3)  # what a second, hidden data.pkl says
SD_DATA = {"0": bytes(8), "1": bytes(8)}


def _recase(name: str, flips: int) -> str:
    chars = list(name)
    for k in range(len(chars)):
        if chars[k].isalpha() and flips & (1 << (k % 8)):
            chars[k] = chars[k].swapcase()
    return "".join(chars)


@st.composite
def record_mutants(draw):
    """A torch zip with record-level edits: the tricks that make zip readers disagree."""
    recs = torch_zip(SD_A, SD_DATA)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(recs) - 1))
        kind = draw(st.sampled_from(["dup", "dup", "recase", "deflate", "local", "drop", "move",
                                     "zip64", "pad", "junk"]))
        r = recs[i]
        if kind == "dup":
            copy = Rec(_recase(r.name, draw(st.integers(0, 255))),
                       SD_B if r.name.endswith(".pkl") else bytes(12))  # differs
            recs.insert(draw(st.integers(0, len(recs))), copy)
        elif kind == "recase":
            r.name = _recase(r.name, draw(st.integers(0, 255)))
        elif kind == "deflate":
            r.method = 8
        elif kind == "local":
            r.local_name = "archive/innocent.pkl"
        elif kind == "drop" and len(recs) > 1:
            del recs[i]
        elif kind == "move":
            recs.insert(draw(st.integers(0, len(recs) - 1)), recs.pop(i))
        elif kind == "zip64":
            r.zip64 = True
        elif kind == "pad":
            r.pad = 64
        else:
            recs.insert(i, Rec("archive/data/../" + r.name.rsplit("/", 1)[-1], b"zz"))
    return zip_bytes(recs, zip64_eocd=any(r.zip64 for r in recs))


@SETTINGS
@given(record_mutants())
def test_zip_tricks_never_make_pttui_and_torch_disagree(data):
    """Whenever pttui gives a reading and torch loads the file, they are the same tensors;
    where torch would fail, pttui says so in a problem note (or refuses)."""
    torch = pytest.importorskip("torch")
    path = os.path.join(_DIR, "z.pt")
    with open(path, "wb") as f:
        f.write(data)
    try:
        ckpt = open_checkpoint(path)
    except ReadError:
        return  # refusing (ambiguous, damaged) is always allowed
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - torch fails: pttui must have flagged a problem
        assert any(n.startswith("problem:") for n in ckpt.notes), ckpt.notes
        return
    ours = {k: list(t.shape) for k, t in ckpt.tensors.items()}
    assert ours == {k: list(v.shape) for k, v in loaded.items()}


_OPCODES = [b"(", b")", b"]", b"}", b"N", b"\x88", b"t", b"\x85", b"\x86", b"R", b"b", b"a",
            b"e", b"s", b"u", b"0", b"2", b"\x81", b"\x93", b"\x94", b"Q", b".", b"l", b"d",
            b"o", b"\x8f", b"\x90", b"\x91", b"\x97", b"\x98"]


@st.composite
def opcode_soup(draw):
    """Short streams of real opcodes with plausible arguments: the stack machine's corners."""
    p = P(draw(st.integers(2, 5)))
    for _ in range(draw(st.integers(1, 40))):
        choice = draw(st.integers(0, 9))
        if choice < 5:
            p.raw(draw(st.sampled_from(_OPCODES)))
        elif choice == 5:
            p.str(draw(st.sampled_from(["storage", "cpu", "0", "torch", "w", "\x00", "é"])))
        elif choice == 6:
            p.int(draw(st.sampled_from([0, 1, -1, 6, 2 ** 40, 10 ** 30])))
        elif choice == 7:
            p.glob(*draw(st.sampled_from([("torch", "FloatStorage"), ("os", "system"),
                                          ("torch._utils", "_rebuild_tensor_v2"),
                                          ("collections", "OrderedDict"), ("torch", "Size"),
                                          ("builtins", "bytearray"), ("x", "Y")])))
        elif choice == 8:
            op = draw(st.sampled_from([b"h", b"q", b"j", b"r"]))
            p.raw(op + bytes([draw(st.integers(0, 3))]) + (b"\0\0\0" if op in b"jr" else b""))
        else:
            storage(str(draw(st.integers(0, 2))), draw(st.integers(0, 8)))(p)
    return p.bytes()


@SETTINGS
@given(opcode_soup())
def test_opcode_soup_inside_a_valid_zip(pkl):
    _read(zip_bytes(torch_zip(pkl, DATA)))


_FIELD_VALUES = [None, True, -1, 0, 1.5, 2 ** 64, 2 ** 70, "F32", "F99", "x", [], [-1], [0, 8],
                 [8, 0], [2 ** 32, 2 ** 32, 4], ["F32"], {"a": 1}, "@GIANT@", "@DEEP@", "@NAN@"]
_RAW = {'"@GIANT@"': "1" + "0" * 5000, '"@DEEP@"': "[" * 5000 + "]" * 5000, '"@NAN@"': "NaN"}


@st.composite
def st_fields(draw):
    """A valid two-tensor header with one or two fields replaced by hostile values."""
    header = {"fc.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "fc.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]},
              "__metadata__": {"format": "pt"}}
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(sorted(header)))
        value = draw(st.sampled_from(_FIELD_VALUES))
        fields = ["format", "other"] if key == "__metadata__" else [
            "dtype", "shape", "data_offsets"]
        if not isinstance(header[key], dict) or draw(st.integers(0, 3)) == 0:
            header[key] = value  # the whole entry
        else:
            header[key][draw(st.sampled_from(fields))] = value
    raw = json.dumps(header)
    for mark, text in _RAW.items():
        raw = raw.replace(mark, text)
    body = raw.encode()
    size = draw(st.sampled_from([len(body), len(body), len(body) + 1, 2 ** 40]))
    return struct.pack("<Q", size) + body + bytes(draw(st.sampled_from([32, 32, 31, 40, 0])))


@SETTINGS
@given(st_fields())
def test_safetensors_field_mutations(data):
    _read(data, "x.safetensors")


@SETTINGS
@given(mutated(struct.pack("<Q", 60) + json.dumps(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode().ljust(60) + bytes(8)))
def test_mutated_safetensors(data):
    _read(data, "y.safetensors")


# -- the memo scan must walk exactly the opcodes the unpickler walks ---------------------

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary() | st.binary().map(bytearray),
    lambda kids: st.lists(kids) | st.tuples(kids, kids) | st.frozensets(st.integers())
    | st.dictionaries(st.text(), kids), max_leaves=30)


@SETTINGS
@given(_VALUES, st.integers(0, 5))
def test_memoguard_stops_where_the_pickle_stops(value, proto):
    data = pickle.dumps([value, value, "tail"], protocol=proto)  # memo references too
    stop = [pos for op, _arg, pos in pickletools.genops(data) if op.name == "STOP"][0]
    assert memoguard.check(data + b"trailing junk", 0, "x") == stop


def test_memoguard_agrees_on_real_torch_pickles():
    torch = pytest.importorskip("torch")
    sd = {f"layer{i}.weight": torch.zeros(3, i + 1) for i in range(300)}  # LONG_BINPUT
    for proto in (2, 4, 5):
        buf = io.BytesIO()
        torch.save({"sd": sd, "args": {"lr": 0.1, "name": "x" * 300}}, buf, pickle_protocol=proto)
        import zipfile

        z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        assert memoguard.check(data, 0, "x") == len(data) - 1
