"""Data safety under faults: killed exports, full disks, read-only and foreign folders,
and loads that are cancelled. What a user checks afterwards: the output is absent or
whole, the source is untouched, leftovers are clearly named, messages are one line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
TRIALS = 60
PARTIAL = re.compile(r"^\.out\d+\.(pt|safetensors)\.pttui-partial-[0-9a-f]{8}-\d+-[a-z0-9_]{8}$")
HOLD = ("import os, sys\nfrom pttui.core.base import partials\n"
        "fd, path = partials.create(sys.argv[1], 'live.pt')\n"
        "print(os.path.basename(path), flush=True)\nsys.stdin.read()\nos.unlink(path)\n")


def _digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def source():
    """A 64 MB state_dict."""
    folder = tempfile.mkdtemp(prefix="pttui-export-")
    torch.manual_seed(0)
    sd = {f"layers.{i}.weight": torch.randn(1024, 1024) for i in range(16)}
    path = os.path.join(folder, "src.pt")
    torch.save(sd, path)
    yield path, sd
    shutil.rmtree(folder, ignore_errors=True)


def _fix(src: str, out: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pttui.cli", "fix", src, "--model", f"ref:{src}",
                           "--auto", "-o", out], capture_output=True, text=True, timeout=300)


def _same_tensors(path: str, sd: dict) -> bool:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        got = load_file(path)
    else:
        got = torch.load(path, weights_only=True)
    return set(got) == set(sd) and all(torch.equal(got[k], v) for k, v in sd.items())


@pytest.mark.slow
def test_exports_killed_at_random_moments(source, tmp_path):
    src, sd = source
    before = _digest(src)
    res = subprocess.run([sys.executable, os.path.join(HERE, "_kill_export.py"), src,
                          str(tmp_path), str(TRIALS), "6", "pile"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["first_exit"] == 0  # an export left alone succeeds
    complete = killed = 0
    for row in report["trials"]:
        out = tmp_path / row["out"]
        if row["kind"] == "none" or (row["kind"] == "end" and not row["killed"]):
            assert row["exit"] == 0 and out.exists(), row  # left alone, it finishes
        if row["kind"] == "end":
            assert out.exists(), f"{row}: killed after the rename, the output must stay"
        if row["kind"] == "write" and row["killed"]:
            assert not out.exists(), f"{row}: killed mid-write, yet the output has its name"
        if out.exists():
            assert _same_tensors(str(out), sd), f"{row}: the output is not the source's tensors"
            out.unlink()  # 64 MB each: checked, then gone
            complete += 1
        killed += row["killed"]
    leftovers = sorted(n for n in os.listdir(tmp_path)
                       if not re.match(r"^out\d+\.(pt|safetensors)$", n))
    assert all(PARTIAL.match(n) for n in leftovers), leftovers
    assert _digest(src) == before
    print(f"\n{TRIALS} kill trials (export takes {report['export_seconds']:.2f}s): "
          f"{killed} killed mid-way, {complete} outputs complete and equal to the source, "
          f"{TRIALS - complete} absent, {len(leftovers)} clearly named partial files left")
    # both outcomes were really exercised (by construction: kills follow the export's progress)
    assert killed >= 5 and complete >= 3, report["trials"]
    assert leftovers, "no kill landed while a partial file existed"
    # the next export into the folder removes every leftover, and nothing else: not the
    # partial file of an export still running (a live process holding its lock)
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    held = live.stdout.readline().strip()
    try:
        outputs = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
        res = _fix(src, str(tmp_path / "next.safetensors"))
        assert res.returncode == 0, res.stderr
        what = "export from a killed run" if len(leftovers) == 1 else "exports from killed runs"
        assert f"note: removed {len(leftovers)} leftover partial {what} (" in res.stdout, \
            res.stdout
        assert sorted(os.listdir(tmp_path)) == sorted(
            [held, *outputs, "next.safetensors", "next.safetensors.recipe.json"])
        assert _same_tensors(str(tmp_path / "next.safetensors"), sd)
    finally:
        live.stdin.close()
        assert live.wait(30) == 0
    assert not (tmp_path / held).exists()


def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.fixture()
def mounted(tmp_path):
    """mount(8) a filesystem on a fresh folder; skip where this box does not allow it."""
    made = []

    def mount(*args: str):
        target = tmp_path / f"mnt{len(made)}"
        target.mkdir()
        res = subprocess.run(["mount", *args, str(target)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount here: {res.stderr.decode().strip()}")
        made.append(target)
        return target
    yield mount
    for target in reversed(made):
        subprocess.run(["umount", str(target)], capture_output=True)


def test_disk_full_is_one_line_and_leaves_nothing(source, mounted):
    src, _ = source
    small = mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs")
    line = _one_line(_fix(src, str(small / "out.pt")))
    assert "disk is full" in line, line
    assert os.listdir(small) == []


def test_read_only_filesystem_is_one_line_and_leaves_nothing(source, mounted, tmp_path):
    src, _ = source
    inner = tmp_path / "ro-src"
    inner.mkdir()
    ro = mounted("--bind", str(inner))
    subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
    line = _one_line(_fix(src, str(ro / "out.safetensors")))
    assert "read-only" in line or "permission denied" in line, line
    assert os.listdir(inner) == []


def test_permission_denied_is_one_line_and_leaves_nothing(source, tmp_path):
    """An immutable folder (chattr +i): the kernel refuses even root, with EPERM."""
    src, _ = source
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        line = _one_line(_fix(src, str(folder / "out.pt")))
        assert "permission denied" in line, line
        assert os.listdir(folder) == []
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_output_on_another_filesystem(source):
    src, sd = source
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(src).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    folder = tempfile.mkdtemp(dir="/dev/shm")
    try:
        out = os.path.join(folder, "out.safetensors")
        res = _fix(src, out)
        assert res.returncode == 0, res.stderr
        assert _same_tensors(out, sd)
        assert sorted(os.listdir(folder)) == ["out.safetensors", "out.safetensors.recipe.json"]
    finally:
        shutil.rmtree(folder)


def test_output_that_is_a_folder(source, tmp_path):
    src, _ = source
    (tmp_path / "out.pt").mkdir()
    line = _one_line(_fix(src, str(tmp_path / "out.pt")))
    assert "is a folder" in line, line
    assert os.listdir(tmp_path / "out.pt") == []


# -- loads -----------------------------------------------------------------------------

PAYLOAD = textwrap.dedent("""
    import subprocess, time
    class Hog:
        def __reduce__(self):
            return (exec, ("import subprocess, time\\nblob = bytearray(300 << 20)\\n"
                           "subprocess.Popen(['sleep', '120'])\\ntime.sleep(120)",))
""")


def test_cancel_kills_the_load_and_its_children_and_frees_memory(tmp_path):
    """A (consented) unsafe load that takes 300 MB and starts a grandchild: cancel ends both."""
    from pttui.core.load import LoadAttempt, LoadPolicy

    (tmp_path / "hogmod.py").write_text(PAYLOAD)
    path = tmp_path / "hog.pt"
    subprocess.run([sys.executable, "-c", "import sys, torch, hogmod; "
                    f"torch.save({{'w': torch.ones(2), 'h': hogmod.Hog()}}, {str(path)!r})"],
                   check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    attempt = LoadAttempt(path, LoadPolicy(weights_only=False), consent=True, force=True)
    attempt.start()
    deadline = time.monotonic() + 120
    child = None
    while time.monotonic() < deadline:
        attempt.poll()
        if attempt.pid and psutil.pid_exists(attempt.pid):
            child = psutil.Process(attempt.pid)
            if child.memory_info().rss > 250 << 20 and child.children(recursive=True):
                break
        time.sleep(0.1)
    assert child is not None and child.memory_info().rss > 250 << 20, "the load never grew"
    family = [child, *child.children(recursive=True)]
    result = attempt.cancel()
    assert result.kind == "cancelled"
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], f"still running after cancel: {alive}"
