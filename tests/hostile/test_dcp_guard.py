"""DCP folders whose ``.metadata`` is hostile, through every path that reads DCP tensors.

The reader lists a DCP folder from ``.metadata`` (RestrictedUnpickler, memoguard);
tensor values are read again by pttui/core/read/dcpdata.py, which unpickles the same file
a second time, later, with torch's DCP classes. Both must refuse a memo bomb before
the C unpickler allocates, and neither may run anything. Each CLI case runs in a child
whose peak memory is measured (wait4), under a clock.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

SD = {"w": torch.arange(6.0).reshape(2, 3), "v": torch.full((4,), 0.5)}
MEMO_INDEX = 1 << 27  # the C unpickler would grow its memo to 2 GiB and zero it
MAX_RSS_MB = 1400  # torch alone is ~600 MB; the memo alone would be 2048 MB
SLOT = f"memo slot {MEMO_INDEX:,}"


def _save(folder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(SD, checkpoint_id=str(folder), no_dist=True)


def _memo_bomb(data: bytes) -> bytes:
    """The same metadata with ``None`` stored at memo slot MEMO_INDEX first."""
    assert data[:1] == b"\x80"
    return data[:2] + b"N" + b"r" + struct.pack("<I", MEMO_INDEX) + b"0" + data[2:]


def _tree(levels: int = 30, width: int = 40) -> list:
    """A ~3 KB pickle that describes 40**29 nodes (memo references, as in
    corpus_pickles._bomb)."""
    node: list = []
    for _ in range(levels - 1):
        node = [node] * width
    return node


def _with_tree(data: bytes, where: str) -> bytes:
    md = pickle.loads(data)  # our own file, just written by dcp.save
    if where == "planner_data":
        md.planner_data = _tree()
    else:  # where torch's planner looks: the chunk list of the tensor it reads
        md.state_dict_metadata["w"].chunks = _tree()
    out = pickle.dumps(md, protocol=4)
    assert len(out) < 4096, len(out)
    return out


BOMBS = {"memo-index": _memo_bomb,
         "reference-tree": lambda d: _with_tree(d, "planner_data"),
         "reference-tree-in-chunks": lambda d: _with_tree(d, "chunks")}


@pytest.fixture()
def folder_for(tmp_path):
    def make(bomb: str):
        folder = tmp_path / f"dcp-{bomb}"
        _save(folder)
        meta = folder / ".metadata"
        meta.write_bytes(BOMBS[bomb](meta.read_bytes()))
        return folder
    return make


def _run(args: list[str], stdin: str | None = None, timeout: float = 120):
    """(exit code, stdout, stderr, peak RSS in MB, seconds) of a child, by wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=err)
        if stdin is not None:
            proc.stdin.write(stdin.encode())
        proc.stdin.close()
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                pytest.fail(f"{args[3:5]} ran past {timeout}s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(), err.read().decode(),
                usage.ru_maxrss // 1024, seconds)


def _pttui(*args: str, stdin: str | None = None):
    return _run([sys.executable, "-m", "pttui.cli", *args], stdin)


COMMANDS = {
    "fix": lambda f, out: _pttui("fix", str(f), "--model", f"ref:{f}", "--auto", "-o", out),
    "diff": lambda f, out: _pttui("diff", str(f), str(f), "--values"),
    "stats": lambda f, out: _pttui("shell", str(f), "--script", "-", "--no-history",
                                   stdin="stats w\nstats v\n"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_cli_paths_answer_in_bounded_time_and_memory(folder_for, tmp_path, bomb, command):
    """exit 0 with the right values, or exit 2 with one line; never a traceback."""
    folder = folder_for(bomb)
    out = str(tmp_path / "out.safetensors")
    rc, stdout, stderr, rss, _ = COMMANDS[command](folder, out)
    assert rss < MAX_RSS_MB, f"peak RSS {rss} MB"
    assert "Traceback" not in stderr and "CheckpointException" not in stderr, stderr
    if bomb == "reference-tree":  # torch never walks planner_data: a correct reading
        assert rc == 0, stderr
        if command == "fix":
            from safetensors.torch import load_file

            got = load_file(out)
            assert set(got) == set(SD) and all(torch.equal(got[k], SD[k]) for k in SD)
        elif command == "diff":
            assert "values: 2 of 2 identical" in stdout, stdout
        else:
            assert "mean       2.5" in stdout and "mean       0.5" in stdout, stdout
        return
    if command == "diff" and bomb != "memo-index":  # diff lists what it could not read
        assert rc == 0 and "values: 1 of 1 identical" in stdout, (rc, stdout, stderr)
        assert "w: w: torch.distributed.checkpoint could not read it" in stdout, stdout
        assert stdout.rstrip().endswith("(1 not compared: unreadable)"), stdout
        return
    lines = stderr.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, stderr)
    if bomb == "memo-index":
        assert SLOT in lines[0], lines[0]
    else:
        assert "w: torch.distributed.checkpoint could not read it" in lines[0], lines[0]
    assert not os.path.exists(out)
    assert [n for n in os.listdir(tmp_path) if "pttui-partial" in n] == []


SWAP = textwrap.dedent("""
    import json, os, resource, sys, time
    from pttui.core.export.export import export
    from pttui.core.base.meta import ReadError
    from pttui.core.read.reader import open_checkpoint
    from pttui.core.read.tensordata import TensorSource

    folder, bomb, how = sys.argv[1:4]
    ckpt = open_checkpoint(folder)  # the folder as it was when pttui opened it
    os.replace(bomb, os.path.join(folder, ".metadata"))  # then .metadata changes
    import torch  # noqa: F401 - counted before the baseline
    import torch.distributed.checkpoint  # noqa: F401
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    try:
        if how == "read":
            with TensorSource(ckpt) as src:
                src.read(ckpt.tensors["w"])
        else:
            export(ckpt, dict(ckpt.tensors), ckpt.tensors, os.path.join(folder, "..", how))
        error = None
    except ReadError as err:
        error = str(err)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"error": error, "grew_mb": grew // 1024,
                      "seconds": time.monotonic() - t0}))
""")


@pytest.mark.parametrize("how", ["read", "out.safetensors", "out.pt"])
def test_tensor_reads_check_the_metadata_they_unpickle(tmp_path, how):
    """The values path unpickles .metadata itself, later than the reader did: the
    bytes it unpickles go through memoguard too (a file swapped after opening)."""
    folder = tmp_path / "dcp"
    _save(folder)
    bomb = tmp_path / "bomb.metadata"
    bomb.write_bytes(_memo_bomb((folder / ".metadata").read_bytes()))
    rc, stdout, stderr, _, _ = _run([sys.executable, "-c", SWAP, str(folder), str(bomb), how])
    assert rc == 0, stderr
    got = json.loads(stdout)
    assert got["error"] is not None and SLOT in got["error"], got
    assert got["error"].startswith(str(folder / ".metadata")), got
    assert got["grew_mb"] < 200, got
    assert sorted(os.listdir(tmp_path)) == ["dcp"]  # no output, no partial file


def test_dcp_saved_by_this_torch_reads_its_values(tmp_path):
    """torch records storage_meta.checkpoint_id as a pathlib path; the allow-list reads
    it as a plain string instead of refusing the whole folder."""
    from pttui.core.read.reader import open_checkpoint
    from pttui.core.read.tensordata import TensorSource

    folder = tmp_path / "dcp"
    _save(folder)
    assert b"PosixPath" in (folder / ".metadata").read_bytes() or sys.platform == "win32"
    ckpt = open_checkpoint(str(folder))
    with TensorSource(ckpt) as src:
        for key, value in SD.items():
            assert torch.equal(src.read(ckpt.tensors[key]), value)


def test_path_entries_are_strings_or_refused(tmp_path):
    """A path global called with anything but strings is refused, not built."""
    from pttui.core.read.dcpdata import reader
    from pttui.core.base.meta import ReadError

    folder = tmp_path / "dcp"
    _save(folder)
    md = pickle.loads((folder / ".metadata").read_bytes())
    md.storage_meta.checkpoint_id = _Listy(["x"])
    (folder / ".metadata").write_bytes(pickle.dumps(md, protocol=4))
    with pytest.raises(ReadError, match="a path in it is not made of strings"):
        reader(str(folder))


class _Listy:
    """Pickles as pathlib.PosixPath(["x"]): what a crafted file could ask for."""

    def __init__(self, arg) -> None:
        self.arg = arg

    def __reduce__(self):
        import pathlib

        return (pathlib.PosixPath, (self.arg,))
