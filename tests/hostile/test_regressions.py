"""Each bug the fuzzers found, as the smallest file that shows it, and what must happen now.

Found by atheris (fuzz/fuzz_reader.py) unless marked "property" (tests/hostile/
test_fuzz_properties.py). Memory-hungry cases run `pttui inspect` in a child with
an address-space limit, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import (P, Rec, legacy_header, state_dict, storage, tensor, torch_zip,  # noqa: E402
                   zip_bytes)

from pttui.core.base.meta import ReadError  # noqa: E402
from pttui.core.read.reader import open_checkpoint  # noqa: E402

W = tensor(storage("0", 2), 0, (2,), (1,))
DATA = {"0": bytes(8)}


def _zip(pkl: bytes) -> bytes:
    return zip_bytes(torch_zip(pkl, DATA))


def _bounded(tmp_path, data: bytes, name: str = "f.pt"):
    """``pttui inspect --json`` under a 1 GiB address space and a 30 s clock."""
    path = tmp_path / name
    path.write_bytes(data)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pttui.cli", "inspect", str(path), "--json"],
                         capture_output=True, text=True, timeout=30, preexec_fn=limit)
    return res, time.monotonic() - t0


def test_memo_index_would_allocate_gigabytes(tmp_path):
    """LONG_BINPUT 0x58000000: CPython's C unpickler grows its memo array to twice the
    index and zeroes it (23 GB) before anything else. memoguard refuses it first."""
    pkl = P(2).raw(b"N").raw(b"r" + struct.pack("<I", 0x58000000)).bytes()
    res, _ = _bounded(tmp_path, _zip(pkl))
    assert res.returncode == 2 and "memo slot 1,476,395,008" in res.stderr, res.stderr


def test_text_put_with_a_huge_index(tmp_path):
    pkl = P(2).raw(b"N").raw(b"p1476395008\n").bytes()
    res, _ = _bounded(tmp_path, _zip(pkl))
    assert res.returncode == 2 and "memo slot" in res.stderr, res.stderr


def test_bytearray8_longer_than_the_file(tmp_path):
    """BYTEARRAY8 of 6 TB: _pickle allocates before reading, the allocation fails, and
    CPython's bytearray then prints 'SystemError: deallocated bytearray object has
    exported buffers' to stderr. Now one line, and no SystemError."""
    pkl = P(5).raw(b"\x96" + struct.pack("<Q", 6_184_752_906_234) + b"abc").bytes()
    res, _ = _bounded(tmp_path, _zip(pkl))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "SystemError" not in res.stderr and "6,184,752,906,234 bytes" in res.stderr


def test_one_byte_file():
    """A file holding only b'\\x80' raised IndexError in format detection."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pttui-one-byte-{os.getpid()}.pt")
    with open(path, "wb") as f:
        f.write(b"\x80")
    try:
        with pytest.raises(ReadError):
            open_checkpoint(path)
    finally:
        os.unlink(path)


def test_persistent_id_holding_a_reference_bomb(tmp_path):
    """repr() of an unknown persistent id for the error message expanded a memo bomb
    inside it: a 7 KB file hung the reader. The message is now built with a bounded repr."""
    p = P(2).raw(b"]").put(0).raw(b"0")
    for i in range(1, 25):
        p.raw(b"]").mark()
        for _ in range(8):
            p.get(i - 1)
        p.raw(b"e").put(i).raw(b"0")
    pkl = p.mark().get(24).tuple().persid().bytes()
    res, seconds = _bounded(tmp_path, _zip(pkl))
    assert res.returncode == 2 and "does not recognise" in res.stderr and seconds < 10


def test_legacy_header_frame_read_twice(tmp_path):
    """The legacy reader used one unpickler for the three header pickles. When they sit in
    one protocol-4 frame, that unpickler serves the second and third from its buffer and
    leaves the file where the first ended: memoguard scanned bytes the unpickler never
    read, and the main object was read from the wrong place. torch calls pickle.load(f)
    afresh for each (a fresh unpickler on a file resumes right after the last STOP, even
    inside a frame); pttui now does the same and reads what torch reads."""
    magic = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    body = magic + b"\x80\x02M\xe9\x03." + b"\x80\x02}."  # magic, 1001, {} in one frame
    framed = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    w = tensor(storage("0", 2, legacy=True), 0, (2,), (1,))
    data = framed + state_dict({"w": w}) + P(2).raw(b"]").str("0").raw(b"a").bytes()
    data += struct.pack("<q", 2) + bytes(8)
    path = tmp_path / "framed.pt"
    path.write_bytes(data)
    torch = pytest.importorskip("torch")  # weights_only=True cannot read frames at all
    assert list(torch.load(path, weights_only=False)) == ["w"]  # our own, benign file
    assert list(open_checkpoint(str(path)).tensors) == ["w"]


def test_memo_attack_hidden_in_a_legacy_header_frame(tmp_path):
    """The same frame, its third pickle asking for a 23 GB memo (what the fuzzer found
    once memoguard existed: the reused unpickler served it past the scan)."""
    magic = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    body = magic + b"\x80\x02M\xe9\x03." + b"\x80\x02N" + b"r\x00\x00\x00\x58" + b"."
    data = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body + bytes(64)
    res, _ = _bounded(tmp_path, data)
    assert res.returncode == 2 and "memo slot 1,476,395,008" in res.stderr, res.stderr


def test_chained_call_is_read_not_refused(tmp_path):
    """getattr(__import__('os'), 'system')('...') made pttui call an inert stand-in and
    report 'damaged' instead of listing the dangerous globals."""
    p = P(2).dict().mark().str("w").value(W).str("x")
    p.call("builtins", "getattr", lambda q: q.call("builtins", "__import__", "os"), "system")
    p.mark().str("echo hi").tuple().reduce()
    path = tmp_path / "chain.pt"
    path.write_bytes(_zip(p.setitems().bytes()))
    ckpt = open_checkpoint(str(path))
    assert {"builtins.getattr", "builtins.__import__"} <= set(ckpt.globals.dangerous)


def test_record_longer_than_declared_is_a_problem(tmp_path):
    """property: torch 2.x refuses a storage record of any other size than declared;
    pttui flagged only shorter ones."""
    path = tmp_path / "long.pt"
    path.write_bytes(zip_bytes(torch_zip(state_dict({"w": W}), {"0": bytes(12)})))
    assert any("record holds 12" in n for n in open_checkpoint(str(path)).notes)


def test_record_outside_the_archive_folder_is_a_problem(tmp_path):
    """property: torch checks every record name against the first record's folder, by
    case ('Archive/data.pkl' then 'archive/...'); pttui read such a file silently."""
    recs = torch_zip(state_dict({"w": W}), DATA)
    recs[0].name = "Archive/data.pkl"
    path = tmp_path / "case.pt"
    path.write_bytes(zip_bytes(recs))
    assert any("not in the archive folder" in n for n in open_checkpoint(str(path)).notes)


@pytest.mark.parametrize("header", [
    b'{"__metadata__": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # RecursionError
    b'{"a": {"dtype": "F32", "shape": [1' + b"0" * 5000 + b'], "data_offsets": [0, 8]}}',
    b'{"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}',  # TypeError
], ids=["deep", "giant-number", "list-dtype"])
def test_safetensors_headers_that_raised(tmp_path, header):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(ReadError):
        open_checkpoint(str(path))


def test_legacy_stream_protocol_repr(tmp_path):
    """The legacy 'protocol' pickle was repr()'d into the message: a 5,000-digit int raised."""
    head = legacy_header().split(b".", 1)[0] + b"."  # the magic number only
    path = tmp_path / "proto.pt"
    path.write_bytes(head + P(2).int(10 ** 5000).bytes() + P(2).raw(b"}").bytes())
    with pytest.raises(ReadError, match="unknown legacy protocol"):
        open_checkpoint(str(path))


def test_zip_with_case_colliding_names_is_refused(tmp_path):
    """torch's miniz ignores case: 'Data.pkl' next to 'data.pkl' is loaded instead of it
    depending on position. pttui read 'data.pkl' and showed the wrong tensors."""
    recs = torch_zip(state_dict({"w": W}), DATA)
    recs.insert(1, Rec("archive/Data.pkl", state_dict({"evil": W})))
    path = tmp_path / "dup.pt"
    path.write_bytes(zip_bytes(recs))
    with pytest.raises(ReadError, match="ambiguous"):
        open_checkpoint(str(path))
