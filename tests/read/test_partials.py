"""Partial export files: named for their machine and writer, locked while written, and
removed later only when their writer is gone. Writers here are real processes, killed
with SIGKILL or kept alive; files are real files on disk."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pttui.core.base import partials
from pttui.core.read.folder import list_folder

HOLD = textwrap.dedent("""
    import os, sys
    from pttui.core.base import partials
    fd, path = partials.create(sys.argv[1], sys.argv[2])
    os.write(fd, b"x" * int(sys.argv[3]))
    print(os.path.basename(path), flush=True)
    sys.stdin.read()  # holds the file (and its lock) until stdin closes
    if sys.argv[4] == "clean":
        os.unlink(path)
""")


class Writer:
    """A process holding one partial file, as an export in progress does."""

    def __init__(self, folder, name: str = "model.pt", size: int = 10,
                 clean: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), name, str(size),
             "clean" if clean else "keep"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.name = self.proc.stdout.readline().strip()
        assert self.name, "the writer did not start"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def finish(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0


def test_name_says_what_and_whose_and_the_file_is_locked(tmp_path):
    fd, path = partials.create(str(tmp_path), "model.safetensors")
    try:
        name = os.path.basename(path)
        m = partials.PATTERN.fullmatch(name)
        assert m and m["target"] == "model.safetensors" and m["host"] == partials.HOST
        assert int(m["pid"]) == os.getpid()
        other = os.open(path, os.O_RDWR)
        try:  # a second open file (any process, or this one) cannot take the lock
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        assert partials.sweep(str(tmp_path)) == [] and os.path.exists(path)
    finally:
        os.close(fd)
    assert [x.name for x in partials.sweep(str(tmp_path))] == [name]  # writer let go
    assert os.listdir(tmp_path) == []


def test_a_very_long_output_name_still_fits(tmp_path):
    long = "m" * 250 + ".pt"
    fd, path = partials.create(str(tmp_path), long[:250])
    os.close(fd)
    assert len(os.path.basename(path)) <= 255 and partials.PATTERN.fullmatch(
        os.path.basename(path))


def test_killed_writers_are_swept_live_ones_and_strangers_never(tmp_path):
    dead = [Writer(tmp_path, f"d{i}.pt", size=1000, clean=False) for i in range(3)]
    for w in dead:
        w.kill()
    live = Writer(tmp_path, "live.pt")
    host = partials.HOST
    strangers = [
        ".a.pt.pttui-partial-abcdefgh",  # an older naming: no machine, no writer
        f"a.pt.pttui-partial-{host}-1-abcdefgh",  # not hidden
        f".a.pt.pttui-partial-{host}-1-abcdefgh.bak",  # something after it
        f".a.pt.pttui-partial-{host}-1-abcdefg",  # seven random characters
        ".a.pt.pttui-partial-00000000-1-abcdefgh",  # another machine's (a shared folder)
        "model.pt", ".hidden",
    ]
    for n in strangers:
        (tmp_path / n).write_bytes(b"keep")
    (tmp_path / f".b.pt.pttui-partial-{host}-1-abcdefgh").symlink_to(tmp_path / "model.pt")
    (tmp_path / f".c.pt.pttui-partial-{host}-1-abcdefgh").mkdir()
    os.mkfifo(tmp_path / f".f.pt.pttui-partial-{host}-1-abcdefgh")
    keep = set(os.listdir(tmp_path)) - {w.name for w in dead}

    assert sorted(x.name for x in partials.leftovers(str(tmp_path))) == sorted(
        w.name for w in dead)
    assert len(os.listdir(tmp_path)) == len(keep) + 3  # looking removes nothing
    notes = partials.sweep_note(str(tmp_path))
    assert len(notes) == 1 and notes[0].startswith(
        "removed 3 leftover partial exports from killed runs (2.9 KiB): "), notes
    assert set(os.listdir(tmp_path)) == keep
    assert (tmp_path / live.name).exists() and (tmp_path / "model.pt").read_bytes() == b"keep"
    live.finish()
    assert not (tmp_path / live.name).exists()
    assert partials.sweep_note(str(tmp_path)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs root")
def test_another_users_leftover_is_left_alone(tmp_path):
    w = Writer(tmp_path, clean=False)
    w.kill()
    os.chown(tmp_path / w.name, 12345, 12345)
    assert partials.sweep(str(tmp_path)) == [] and (tmp_path / w.name).exists()


def test_where_locks_do_not_work_nothing_is_removed(tmp_path, monkeypatch):
    real = fcntl.flock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    fd, path = partials.create(str(tmp_path), "x.pt")  # the writer goes on without one
    os.close(fd)
    assert partials.sweep(str(tmp_path)) == [] and os.path.exists(path)
    monkeypatch.setattr(fcntl, "flock", real)
    assert len(partials.sweep(str(tmp_path))) == 1


RACE = textwrap.dedent("""
    import os, sys, time
    from pttui.core.base import partials
    folder, until, lost = sys.argv[1], time.monotonic() + float(sys.argv[2]), 0
    made = 0
    while time.monotonic() < until:
        fd, path = partials.create(folder, "race.pt")
        made += 1
        time.sleep(0.001)  # a sweep runs meanwhile
        if not os.path.exists(path) or os.fstat(fd).st_nlink == 0:
            lost += 1
        os.unlink(path)
        os.close(fd)
    print(made, lost)
""")


def test_a_sweep_racing_new_files_never_takes_one(tmp_path):
    """Two writers create and hold files while this process sweeps without pause."""
    writers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), "3"],
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    swept = 0
    while any(w.poll() is None for w in writers):
        swept += len(partials.sweep(str(tmp_path)))
    made = lost = 0
    for w in writers:
        out, _ = w.communicate()
        assert w.returncode == 0
        m, lo = map(int, out.split())
        made, lost = made + m, lost + lo
    # a sweep may take a file between mkstemp and flock (``swept``); its writer then
    # notices and makes another, so no writer ever goes on with a file that is gone
    assert made > 100 and lost == 0, (made, lost, swept)


def test_the_folder_list_hides_partials_and_the_cli_counts_leftovers(tmp_path):
    import torch

    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    w = Writer(tmp_path, "out.pt", size=2048, clean=False)
    w.kill()
    live = Writer(tmp_path, "other.pt")
    try:
        assert [e.name for e in list_folder(str(tmp_path))] == ["model.pt"]
        assert [e.name for e in list_folder(str(tmp_path), examine=False)] == ["model.pt"]
        res = subprocess.run([sys.executable, "-m", "pttui.cli", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert ("+ 1 hidden partial export left by a killed run (2.0 KiB); the next export "
                "into this folder removes them") in res.stdout, res.stdout
        assert (tmp_path / w.name).exists()  # listing never deletes
    finally:
        live.finish()


def test_an_export_sweeps_its_folder_but_not_a_concurrent_export(tmp_path):
    """Export A runs slowly (a progress callback that sleeps) in its own process while
    export B, into the same folder, sweeps: A finishes whole; B removes only the dead."""
    import torch

    torch.manual_seed(0)
    sd = {f"t{i}": torch.randn(256, 256) for i in range(12)}
    src = tmp_path / "src" / "model.pt"
    src.parent.mkdir()
    torch.save(sd, src)
    out = tmp_path / "out"
    out.mkdir()
    slow = textwrap.dedent(f"""
        import time
        from pttui.core.export.export import export
        from pttui.core.read.reader import open_checkpoint
        ck = open_checkpoint({str(src)!r})
        r = export(ck, dict(ck.tensors), ck.tensors, {str(out / "a.pt")!r},
                   fmt="pt", progress=lambda d, t: time.sleep(0.25))
        print(r.problems)
    """)
    a = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    mine = []
    while time.monotonic() < deadline and not mine:
        mine = [n for n in os.listdir(out) if n.startswith(".a.pt.pttui-partial-")]
        time.sleep(0.02)
    assert mine and a.poll() is None, "export A never started writing"
    dead = Writer(out, "old.pt", size=4096, clean=False)  # after A's own sweep
    dead.kill()

    from pttui.core.export.export import export
    from pttui.core.read.reader import open_checkpoint

    ck = open_checkpoint(str(src))
    b = export(ck, dict(ck.tensors), ck.tensors, str(out / "b.safetensors"))
    assert b.problems == ["removed 1 leftover partial export from a killed run (4.0 KiB): "
                          f"{dead.name}"], b.problems
    assert os.path.exists(out / mine[0]) and a.poll() is None  # A still at it, untouched
    stdout, stderr = a.communicate(timeout=120)
    assert a.returncode == 0, stderr
    assert stdout.strip() == "[]"  # A found nothing to remove: B's file was locked or gone
    got = torch.load(out / "a.pt", weights_only=True)
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    assert sorted(os.listdir(out)) == ["a.pt", "b.safetensors"]
