"""A pickle that makes Python hash forever (10^29 tuples) must not hang any front end:
the CLI reads in a forked child, the TUI and the shell read in a child first."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pttui.commands import Context, run_line
from pttui.core.guard import readguard
from pttui.core.base.meta import ReadError
from tests.helpers import SAMPLES

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from craft import hash_bomb  # noqa: E402

DEADLINE = 2


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PTTUI_READ_DEADLINE", str(DEADLINE))
    (tmp_path / "bomb.pt").write_bytes(hash_bomb())
    shutil.copy(SAMPLES / "squeezenet1_1.pt", tmp_path / "good.pt")
    return tmp_path


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pttui.cli", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def test_inspect_is_stopped_at_the_deadline_with_one_line(folder):
    t0 = time.monotonic()
    p = _cli("inspect", str(folder / "bomb.pt"), "--json")
    assert time.monotonic() - t0 < DEADLINE + 10
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "reading did not finish in 2 s" in p.stderr
    good = _cli("inspect", str(folder / "good.pt"), "--json")  # the guard changes nothing else
    assert good.returncode == 0 and '"format":"torch-zip"' in good.stdout


def test_exit_codes_of_the_guarded_child_come_through(folder):
    p = _cli("check", str(folder / "good.pt"), "--model", "torchvision:resnet18")
    assert p.returncode == 1 and "strict load" in p.stdout


def test_ctrl_c_stops_a_guarded_command(folder):
    p = subprocess.Popen([sys.executable, "-m", "pttui.cli", "inspect", str(folder / "bomb.pt")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, env={**os.environ, "PTTUI_READ_DEADLINE": "60"})
    time.sleep(1.5)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130
    with pytest.raises(ProcessLookupError):
        os.killpg(p.pid, 0)  # nothing of it is left running


def test_folder_listing_marks_the_file_and_lists_the_rest(folder):
    p = _cli(str(folder))
    assert p.returncode == 0, p.stderr
    bomb = next(ln for ln in p.stdout.splitlines() if "bomb.pt" in ln)
    good = next(ln for ln in p.stdout.splitlines() if "good.pt" in ln)
    assert "unreadable: reading did not finish" in bomb and "52 tensors" in good


def test_shell_open_refuses_it_and_the_session_goes_on(folder):
    ctx = Context()
    assert run_line(ctx, f"open {folder / 'good.pt'}").ok
    t0 = time.monotonic()
    r = run_line(ctx, f"open {folder / 'bomb.pt'}")
    assert time.monotonic() - t0 < DEADLINE + 10
    assert not r.ok and "reading did not finish" in r.title
    assert ctx.session.source.path == str(folder / "good.pt")


def test_preflight_passes_a_good_file_and_stops_a_bomb(monkeypatch, tmp_path):
    monkeypatch.setenv("PTTUI_READ_DEADLINE", "1")
    readguard.preflight(str(SAMPLES / "squeezenet1_1.pt"))  # no ReadError
    with pytest.raises(ReadError, match="reading did not finish in 1 s"):
        (tmp_path / "bomb.pt").write_bytes(hash_bomb())
        readguard.preflight(str(tmp_path / "bomb.pt"))


def test_a_safetensors_file_needs_no_reading_child(monkeypatch, tmp_path):
    """No pickle, nothing that can hang: the TUI and the shell read it at once. A pickle
    behind a .safetensors name is still read in the child first."""
    started = []
    real = readguard.ReadingChild.run
    monkeypatch.setattr(readguard.ReadingChild, "run", lambda self: started.append(self) or real(self))
    ckpt = readguard.open_guarded(str(SAMPLES / "tiny_vit.safetensors"))
    assert ckpt.format == "safetensors" and len(ckpt.tensors) > 0 and started == []
    monkeypatch.setenv("PTTUI_READ_DEADLINE", "1")
    (tmp_path / "bomb.safetensors").write_bytes(hash_bomb())
    with pytest.raises(ReadError, match="reading did not finish in 1 s"):
        readguard.preflight(str(tmp_path / "bomb.safetensors"))
    assert len(started) == 1


def test_a_reference_target_is_read_once_under_the_commands_own_deadline(folder):
    """`check --model ref:FILE` reads the reference in the guarded child itself (no second
    child): a hanging reference is stopped by the command's deadline all the same."""
    t0 = time.monotonic()
    p = _cli("check", str(folder / "good.pt"), "--model", f"ref:{folder / 'bomb.pt'}")
    assert time.monotonic() - t0 < DEADLINE + 10
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "reading did not finish in 2 s" in p.stderr
    ok = _cli("check", str(folder / "good.pt"), "--model", f"ref:{folder / 'good.pt'}")
    assert ok.returncode == 0 and "strict load: OK" in ok.stdout


def test_preflight_unpickles_every_shard_of_a_set(monkeypatch, tmp_path):
    """The child only unpickles (the part that can hang), but it must reach every shard:
    a bomb in the second .bin shard of an index is stopped, not read in the front end."""
    monkeypatch.setenv("PTTUI_READ_DEADLINE", "1")
    src = SAMPLES / "tiny_vit_sharded_bin"
    shutil.copytree(src, tmp_path / "set")
    index = tmp_path / "set" / "pytorch_model.bin.index.json"
    readguard.preflight(str(index))  # the real set: no ReadError
    shards = sorted(p for p in (tmp_path / "set").iterdir() if p.suffix == ".bin")
    shards[-1].write_bytes(hash_bomb())
    with pytest.raises(ReadError, match="reading did not finish in 1 s"):
        readguard.preflight(str(index))


@pytest.mark.slow
@pytest.mark.parametrize("whom", ["parent", "group", "parent twice"])
def test_sigterm_stops_an_export_and_leaves_nothing(tmp_path, whom):
    """`kill PID` (or the whole group, as a service manager does) during `pttui fix`: the
    forked child is told, discards its partial file, and no orphan goes on writing."""
    import json

    import psutil
    import torch

    sd = {f"layer{i}.weight": torch.randn(512, 512) for i in range(400)}  # 400 MiB
    torch.save(sd, tmp_path / "big.pt")
    del sd
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"pttui_recipe": 1, "ops": [
        {"op": "cast", "dtype": "float16", "pattern": "*", "kind": "glob"}]}))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pttui.cli", "fix", str(tmp_path / "big.pt"), "--model",
         f"ref:{tmp_path / 'big.pt'}", "--recipe", str(recipe), "-o", str(out / "o.pt")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".o.pt.pttui-partial") for p in out.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)
    if whom == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGTERM)
        if whom == "parent twice":  # an impatient second kill must not orphan the child
            time.sleep(0.05)
            os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (143, -signal.SIGTERM), err
    assert b"Traceback" not in err
    for child in children:
        try:
            child.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert list(out.iterdir()) == [], list(out.iterdir())


_FRONT_ENDS = {
    "reading child": "from pttui.core.guard import readguard\nreadguard.preflight(sys.argv[1])\n",
    "load child": ("from pttui.core.load import LoadAttempt\n"
                   "LoadAttempt(sys.argv[1], force=True).start()\n"
                   "import time\ntime.sleep(120)\n"),
}


@pytest.mark.parametrize("front_end", list(_FRONT_ENDS))
def test_a_child_dies_with_its_killed_front_end(folder, front_end):
    """SIGKILL of a TUI or shell (a dropped SSH session) while its reading or torch.load
    child hashes a crafted pickle: the child runs in a session of its own, holds the GIL
    in C (no thread of its own can notice), and must not spin on for nobody."""
    import psutil

    code = "import sys\n" + _FRONT_ENDS[front_end]
    # a front end killed outright cleans nothing up: its temp folders go in the test's own
    (folder / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / "bomb.pt")],
                            env={**os.environ, "PTTUI_READ_DEADLINE": "60",
                                 "TMPDIR": str(folder / "tmp")})
    deadline = time.monotonic() + 60
    while not (kids := psutil.Process(proc.pid).children()) or \
            kids[0].cpu_times().user < 0.5:  # past its start-up, hashing
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    for kid in kids:
        kid.wait(timeout=10)  # psutil.TimeoutExpired if it lives on


def test_a_load_started_by_a_thread_that_ends_still_finishes():
    """Children die with the thread that forked them (PR_SET_PDEATHSIG): a load started
    from a short-lived worker thread must still run to the end."""
    import threading

    from pttui.core.load import LoadAttempt

    started = []

    def worker() -> None:
        started.append(LoadAttempt(SAMPLES / "squeezenet1_1.pt").start())
        time.sleep(1.0)  # the child has set its parent-death signal, and imports torch

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    result = started[0].wait(timeout=120)
    assert result is not None and result.ok, result


def test_a_signal_swallowed_in_a_weakref_callback_still_stops_the_child():
    """The flake behind "parent twice": SIGTERM handled while the import system ran a weakref
    callback raised KeyboardInterrupt where Python only prints "Exception ignored" and goes
    on, so the export ran to its end. The child's unraisable hook interrupts again."""
    code = textwrap.dedent("""
        import os, signal, sys, weakref
        from pttui.core.guard import readguard as rg
        for sig in rg._FORWARDED:
            signal.signal(sig, rg._interrupt_once)
        sys.unraisablehook = rg._redeliver
        class Obj: pass
        obj = Obj()
        def callback(_):
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, inside the callback
            for _ in range(1000): pass
        ref = weakref.ref(obj, callback)
        try:
            del obj
            for _ in range(10 ** 8): pass
            print("went on")
        except KeyboardInterrupt:
            print("stopped")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.strip() == "stopped", res.stderr
    assert "Exception ignored" not in res.stderr and "Traceback" not in res.stderr
