"""Real torch.load attempts in a child process: every failure kind on a real file.

Files are built with torch here; the builders are plain functions so the CLI
tests can reuse them.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import signal
import struct
import sys
import tarfile
import threading
import time
import warnings
import zipfile

import numpy as np
import psutil
import pytest
import torch

from pttui.core.load import failures as lf
from pttui.core.load import sandbox as load_sandbox
from pttui.core.load.attempt import LoadAttempt, attempt_load
from pttui.core.load.policy import LoadPolicy, LoadResult
from pttui.core.base.meta import ReadError
from tests.helpers import SAMPLES

# -- builders ---------------------------------------------------------------------------

def state_dict() -> dict:
    return {"fc.weight": torch.randn(3, 4), "fc.bias": torch.zeros(3)}


def save_cuda_tagged(path) -> None:
    """torch.save whose storages say 'cuda:0', written on a machine without CUDA."""
    def tag(obj):
        return "cuda:0" if getattr(obj, "device", None) is not None and \
            obj.device.type == "cpu" else None

    entry = (0, tag, lambda obj, location: None)
    torch.serialization._package_registry.append(entry)
    torch.serialization._package_registry.sort(key=lambda e: e[0])
    try:
        torch.save(state_dict(), path)
    finally:
        torch.serialization._package_registry.remove(entry)


def save_with_namespace(path) -> None:
    torch.save({"model": state_dict(), "args": argparse.Namespace(lr=0.1), "epoch": 3}, path)


class _Runs:
    """Pickles as a call of ``fn(*args)``: what a hostile checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def save_calling(path, fn, *args) -> None:
    torch.save({"model": state_dict(), "x": _Runs(fn, *args)}, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    torch.save({"model": state_dict(), "epoch": 7, "best": 0.5, "name": "run1"},
               d / "plain.pt")
    torch.save(torch.nn.Linear(2, 2), d / "module.pt")
    save_cuda_tagged(d / "cuda.pt")
    save_with_namespace(d / "ns.pt")
    torch.save({"model": state_dict(), "np": np.float64(1.5), "arr": np.arange(3)}, d / "np.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit.script is deprecated, still real
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(d / "ts.pt"))
    data = (d / "plain.pt").read_bytes()
    (d / "trunc.pt").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(d / "plain.pt") as zin, \
            zipfile.ZipFile(d / "nodata.pt", "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith("data.pkl"):
                zout.writestr(info, zin.read(info.filename))
    with tarfile.open(d / "oldtar.pt", "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            body = pickle.dumps(0, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (d / "text.pt").write_text("<html>404 Not Found</html>\n")
    (d / "empty.pt").write_bytes(b"")
    np.save(d / "arr.npy", np.arange(10))
    with open(d / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    (d / "bad.safetensors").write_bytes(struct.pack("<Q", 20) + b'{"a": not json}xxxxx')
    from safetensors.torch import save_file

    save_file(state_dict(), str(d / "good.safetensors"), metadata={"format": "pt"})
    whole = (d / "good.safetensors").read_bytes()
    (d / "cut.safetensors").write_bytes(whole[:40])
    torch.save({"w": torch.zeros(50_000_000)}, d / "big.pt")  # 200 MB
    return d


# -- policy ------------------------------------------------------------------------------

def test_policy_validates_and_merges_allow_lists():
    with pytest.raises(ValueError, match="map_location"):
        LoadPolicy(map_location="gpu")
    with pytest.raises(ValueError, match="module.Name"):
        LoadPolicy(allow_globals=("eval",))
    p = LoadPolicy(allow_globals=("argparse.Namespace",))
    q = p.with_changes({"allow_globals": ["numpy.dtype", "argparse.Namespace"],
                        "map_location": "cuda:1"})
    assert q.allow_globals == ("argparse.Namespace", "numpy.dtype")
    assert q.map_location == "cuda:1" and p.map_location == "auto"
    assert LoadPolicy.from_json(q.to_json()) == q


def test_unsafe_load_needs_consent(files):
    with pytest.raises(ValueError, match="consent"):
        attempt_load(files / "plain.pt", LoadPolicy(weights_only=False))


def test_missing_path_and_folder_raise_read_error(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        attempt_load(tmp_path / "nope.pt")
    with pytest.raises(ReadError, match="folder"):
        attempt_load(tmp_path)


# -- success -----------------------------------------------------------------------------

def test_plain_checkpoint_loads_with_a_summary(files):
    r = attempt_load(files / "plain.pt")
    assert r.ok and r.kind == "ok" and r.failure is None
    by_key = {t["key"]: t for t in r.summary["tensors"]}
    w = by_key["model.fc.weight"]
    assert (w["shape"], w["dtype"], w["nbytes"]) == ([3, 4], "float32", 48)
    assert w["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert r.summary["other"] == {"epoch": 7, "best": 0.5, "name": "run1"}
    assert r.summary["type"] == "dict" and r.summary["tensor_count"] == 2
    assert r.policy["mmap"] is True and r.policy["weights_only"] is True
    assert r.policy["map_location"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert r.seconds > 0 and r.peak_rss > 0
    assert LoadResult.from_json(r.to_json()).to_json() == r.to_json()


def _no_code_advice(failure):
    """No allow-list, no add_safe_globals or weights_only=False snippet; one way only:
    the sandboxed, typed-consent load that says it runs the file's code."""
    assert not any(f.changes.get("allow_globals") for f in failure.fixes)
    assert not any(f.code and ("safe_globals" in f.code or "weights_only=False" in f.code)
                   for f in failure.fixes)
    unsafe = [f for f in failure.fixes if f.unsafe]
    assert len(unsafe) == 1 and unsafe[0].changes == {"weights_only": False}
    assert "RUNS its code" in unsafe[0].description
    return unsafe[0]


def test_pickled_module_loads_only_by_running_its_code_after_consent(files):
    r = attempt_load(files / "module.pt")
    assert r.kind == lf.WEIGHTS_ONLY
    assert r.failure.details["globals"]["dangerous"] == ["torch.nn.modules.linear.Linear"]
    assert "torch.nn.modules.linear.Linear" in r.failure.explanation
    run_it = _no_code_advice(r.failure)
    with pytest.raises(ValueError, match="not on pttui's list"):
        LoadPolicy(allow_globals=["torch.nn.modules.linear.Linear"])
    ok = attempt_load(files / "module.pt", LoadPolicy().apply(run_it), consent=True)
    assert ok.summary["type"] == "torch.nn.modules.linear.Linear"
    assert [(t["key"], t["parameter"]) for t in ok.summary["tensors"]] == [
        ("weight", True), ("bias", True)]  # walked as its state_dict


def test_meta_loads_shapes_without_data(files):
    r = attempt_load(files / "plain.pt", LoadPolicy(map_location="meta"))
    assert r.ok and {t["device"] for t in r.summary["tensors"]} == {"meta"}


def test_safetensors_loads_with_the_safetensors_library(files):
    r = attempt_load(files / "good.safetensors", LoadPolicy(map_location="cpu"))
    assert r.ok and r.policy["loader"] == "safetensors" and r.format == "safetensors"
    assert {t["key"] for t in r.summary["tensors"]} == {"fc.weight", "fc.bias"}
    assert r.summary["other"] == {"__metadata__.format": "pt"}


# -- failures, each on a real file ------------------------------------------------------

def test_cuda_file_on_cpu_box_keep_fails_and_the_fix_loads(files, no_cuda):
    r = attempt_load(files / "cuda.pt", LoadPolicy(map_location="keep"))
    assert r.kind == lf.DEVICE_UNAVAILABLE
    assert "Attempting to deserialize object on a CUDA device" in r.failure.message
    fix = r.failure.fixes[0]
    assert fix.changes == {"map_location": "cpu"}
    fixed = attempt_load(files / "cuda.pt", LoadPolicy(map_location="keep").apply(fix))
    assert fixed.ok and {t["device"] for t in fixed.summary["tensors"]} == {"cpu"}


def test_cuda_file_loads_with_auto(files):
    r = attempt_load(files / "cuda.pt")
    assert r.ok


def test_weights_only_refusal_names_the_global_and_the_allow_fix_loads(files):
    r = attempt_load(files / "ns.pt")
    assert r.kind == lf.WEIGHTS_ONLY
    assert r.failure.headline.startswith("Unsupported global: GLOBAL argparse.Namespace")
    allow = r.failure.fixes[0]
    assert allow.changes == {"allow_globals": ["argparse.Namespace"]} and not allow.unsafe
    assert r.failure.fixes[-1].unsafe and r.failure.fixes[-1].changes == {"weights_only": False}
    assert "\x1b[" not in r.failure.message  # torch bolds part of this message
    ok = attempt_load(files / "ns.pt", LoadPolicy().apply(allow))
    assert ok.ok and ok.summary["other"] == {"args.lr": 0.1, "epoch": 3}


def test_numpy_globals_load_after_following_the_fixes(files):
    policy, result = LoadPolicy(), None
    for _ in range(4):
        result = attempt_load(files / "np.pt", policy)
        if result.ok:
            break
        assert result.kind == lf.WEIGHTS_ONLY
        policy = policy.apply(result.failure.fixes[0])
    assert result.ok and result.summary["other"]["np"] == 1.5
    assert all(g.startswith("numpy.") for g in policy.allow_globals)


def test_dangerous_global_gets_no_allow_fix_and_never_runs(files, tmp_path):
    marker = tmp_path / "ran"
    save_calling(tmp_path / "evil.pt", os.system, f"touch {marker}")
    r = attempt_load(tmp_path / "evil.pt")
    assert r.kind == lf.WEIGHTS_ONLY
    assert "posix.system" in r.failure.details["globals"]["dangerous"]
    assert [f.changes for f in r.failure.fixes] == [{"weights_only": False}]
    assert "malicious" in r.failure.explanation
    assert not marker.exists()


def test_torchscript_archive_points_to_jit_load(files):
    r = attempt_load(files / "ts.pt")
    assert r.kind == lf.TORCHSCRIPT
    assert "TorchScript archives" in r.failure.message
    assert "torch.jit.load" in r.failure.fixes[0].code


def test_legacy_tar_format(files):
    r = attempt_load(files / "oldtar.pt")
    assert r.kind == lf.LEGACY_TAR
    assert "legacy .tar format" in r.failure.message


def test_truncated_zip_is_corrupt(files):
    r = attempt_load(files / "trunc.pt")
    assert r.kind == lf.CORRUPT_ZIP
    assert "failed finding central directory" in r.failure.message
    assert r.failure.headline.endswith("central directory.")


def _damaged_pickle(tmp_path, keep_crc: bool):
    """A real torch.save whose data.pkl is damaged: bytes 60-200 of the file overwritten
    (its CRC no longer matches), or zeros after the protocol header with the CRC redone."""
    path = tmp_path / ("crc_ok.pt" if keep_crc else "damaged.pt")
    torch.save(state_dict(), path)
    if not keep_crc:
        data = bytearray(path.read_bytes())
        data[60:200] = b"\0" * 140
        path.write_bytes(bytes(data))
        with zipfile.ZipFile(path) as z:
            assert z.testzip().endswith("/data.pkl")  # the precondition: a CRC mismatch
        return path
    src = zipfile.ZipFile(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                body = body[:2] + b"\0" * 8 + body[10:]  # byte 0 is no pickle opcode
            dst.writestr(info, body)
    path.write_bytes(buf.getvalue())
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # CRCs match: only the opcode tells
    return path


@pytest.mark.parametrize("keep_crc", [False, True])
def test_damaged_pickle_is_corrupt_and_never_gets_an_unsafe_fix(tmp_path, keep_crc):
    path = _damaged_pickle(tmp_path, keep_crc)
    r = attempt_load(path)
    assert r.kind == lf.CORRUPT_ZIP, r.failure
    assert "Weights only load failed" in r.failure.message  # what torch said
    assert not any(f.unsafe or f.changes for f in r.failure.fixes)
    assert r.failure.headline.startswith("The file is damaged")
    assert ("CRC" if not keep_crc else "no pickle opcode") in r.failure.explanation


def test_cli_load_of_a_damaged_pickle_suggests_no_unsafe_load(tmp_path):
    from tests.helpers import run_cli

    res = run_cli("load", str(_damaged_pickle(tmp_path, keep_crc=False)))
    assert res.returncode == 1
    assert "corrupt_zip" in res.stderr and "unsafe" not in res.stdout + res.stderr


def test_map_location_cuda_on_a_cpu_box_blames_the_request_not_the_file(files, no_cuda):
    r = attempt_load(files / "plain.pt", LoadPolicy(map_location="cuda"))
    assert r.kind == lf.DEVICE_UNAVAILABLE
    assert "saved from" not in r.failure.explanation
    assert "You asked for map_location='cuda'" in r.failure.explanation
    fix = r.failure.fixes[0]
    assert fix.changes == {"map_location": "cpu"}
    assert attempt_load(files / "plain.pt", LoadPolicy(map_location="cuda").apply(fix)).ok
    saved = attempt_load(files / "cuda.pt", LoadPolicy(map_location="keep"))  # the file's fault
    assert "The file was saved from CUDA tensors" in saved.failure.explanation


def test_sharded_index_names_what_to_do_without_naming_a_front_end(tmp_path):
    r = attempt_load(SAMPLES / "tiny_vit_sharded" / "model.safetensors.index.json")
    assert r.kind == lf.NOT_A_CHECKPOINT
    assert "pttui reads the index; torch.load cannot" in r.failure.explanation
    assert "pttui inspect" not in r.failure.explanation


def test_a_device_is_not_a_checkpoint():
    r = attempt_load("/dev/zero")
    assert r.kind == lf.NOT_A_CHECKPOINT
    assert "not a regular file" in r.failure.explanation.lower()


@pytest.mark.timeout(30)
def test_a_pipe_is_refused_without_opening_it(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: refuse it before that."""
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    r = attempt_load(fifo)
    assert not r.ok and "not a regular file" in r.failure.explanation.lower()


@pytest.mark.parametrize("source", ["sample", "numpy"])
def test_the_first_suggested_allow_list_loads(files, source):
    """numpy.dtype('f8') also needs numpy.dtypes.Float64DType, which no GLOBAL names:
    pttui predicts it, so one suggestion is enough."""
    path = SAMPLES / "tiny_vit_training_state.pt" if source == "sample" else files / "np.pt"
    r = attempt_load(path)
    assert r.kind == lf.WEIGHTS_ONLY
    allow = r.failure.fixes[0]
    want = {"numpy.dtype", "numpy.dtypes.Float64DType"}  # np.float64 scalars in both
    if source == "numpy":
        want.add("numpy.dtypes.Int64DType")  # np.arange(3)
    assert want <= set(allow.changes["allow_globals"])
    ok = attempt_load(path, LoadPolicy().apply(allow))
    assert ok.ok, ok.failure


def test_zip_without_data_pkl_is_a_crashed_save(files):
    r = attempt_load(files / "nodata.pt")
    assert r.kind == lf.MISSING_DATA_PKL
    assert "failed locating file data.pkl" in r.failure.message


@pytest.mark.parametrize("name, words", [("text.pt", "HTML page"), ("empty.pt", "empty"),
                                         ("arr.npy", "NumPy"), ("plain.pkl", "plain pickle")])
def test_not_a_checkpoint(files, name, words):
    r = attempt_load(files / name)
    assert r.kind == lf.NOT_A_CHECKPOINT
    assert words in r.failure.explanation


@pytest.mark.parametrize("name", ["bad.safetensors", "cut.safetensors"])
def test_invalid_safetensors_header(files, name):
    r = attempt_load(files / name)
    assert r.kind == lf.SAFETENSORS_INVALID and r.format == "safetensors"
    assert r.failure.error_type == "SafetensorError"
    assert "Error while deserializing header" in r.failure.message


def test_missing_module_from_a_full_load(tmp_path, monkeypatch):
    mods = tmp_path / "project"
    mods.mkdir()
    (mods / "pttui_test_cfgmod.py").write_text("class Cfg:\n    def __init__(self):\n"
                                               "        self.depth = 18\n")
    sys.path.insert(0, str(mods))
    try:
        import pttui_test_cfgmod

        torch.save({"model": state_dict(), "cfg": pttui_test_cfgmod.Cfg()}, tmp_path / "c.pt")
    finally:
        sys.path.remove(str(mods))
        sys.modules.pop("pttui_test_cfgmod", None)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    r = attempt_load(tmp_path / "c.pt")
    assert r.kind == lf.WEIGHTS_ONLY
    assert r.failure.details["globals"]["dangerous"] == ["pttui_test_cfgmod.Cfg"]
    run_it = LoadPolicy().apply(_no_code_advice(r.failure))
    missing = attempt_load(tmp_path / "c.pt", run_it, consent=True)
    assert missing.kind == lf.MISSING_MODULE
    assert missing.failure.details["module"] == "pttui_test_cfgmod"
    assert "PYTHONPATH" in missing.failure.fixes[0].description
    monkeypatch.setenv("PYTHONPATH", str(mods))
    ok = attempt_load(tmp_path / "c.pt", run_it, consent=True)
    assert ok.ok and ok.summary["other"] == {"cfg.depth": 18}


def test_memory_precheck_refuses_with_numbers_unless_forced(tmp_path):
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(psutil.virtual_memory().total * 4)  # sparse: no disk used
    attempt = LoadAttempt(huge).start()
    r = attempt.poll()
    assert r is not None and r.kind == lf.OUT_OF_MEMORY and attempt.pid is None
    assert r.failure.details["needed"] == huge.stat().st_size
    assert 0 < r.failure.details["available"] < r.failure.details["needed"]
    assert "GiB" in r.failure.explanation
    assert any(f.force for f in r.failure.fixes)
    forced = attempt_load(huge, force=True)
    assert forced.kind == lf.NOT_A_CHECKPOINT  # it ran: zeros are no checkpoint


def test_memory_error_in_the_child_is_out_of_memory(files):
    # The ceiling guards CPU memory (CUDA reserves address space, so none is set there).
    r = attempt_load(files / "big.pt", LoadPolicy(mmap=False, map_location="cpu"),
                     memory_limit=50 << 20)
    assert r.kind == lf.OUT_OF_MEMORY
    assert "allocate" in r.failure.message
    assert {"mmap": True} in [f.changes for f in r.failure.fixes]


def test_timeout_stops_the_child(files):
    attempt = LoadAttempt(files / "big.pt", timeout=0.3).start()
    r = attempt.wait()
    assert r.kind == lf.TIMEOUT
    assert not psutil.pid_exists(attempt.pid)


def test_cancel_kills_the_child_and_reports_cancelled(files):
    attempt = LoadAttempt(files / "big.pt", LoadPolicy(mmap=False)).start()
    deadline = time.monotonic() + 30
    while attempt.state == "queued" and time.monotonic() < deadline:
        attempt.poll()
        time.sleep(0.02)
    assert attempt.state == "running" and psutil.pid_exists(attempt.pid)
    time.sleep(0.5)
    r = attempt.cancel()
    assert r.kind == lf.CANCELLED and attempt.state == "done"
    assert not psutil.pid_exists(attempt.pid)
    assert attempt.poll() is r


def test_attempt_load_honours_a_cancel_event_from_another_thread(files):
    event = threading.Event()
    threading.Timer(0.5, event.set).start()
    t0 = time.monotonic()
    r = attempt_load(files / "big.pt", cancel=event)
    assert r.kind == lf.CANCELLED and time.monotonic() - t0 < 5


def test_loads_run_one_at_a_time(files):
    first = LoadAttempt(files / "plain.pt").start()
    second = LoadAttempt(files / "plain.pt").start()
    assert first.state == "running" and second.state == "queued" and second.pid is None
    assert first.wait().ok
    r2 = second.wait()
    assert r2.ok
    assert second.pid != first.pid


def test_a_queued_attempt_collects_a_finished_one_nobody_polled(files):
    first = LoadAttempt(files / "plain.pt").start()
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT  # exited, left unreaped for `first`
    while os.waitid(os.P_PID, first.pid, flags) is None:
        time.sleep(0.05)
    second = LoadAttempt(files / "plain.pt").start()  # never polls `first` itself
    assert second.state == "running" and first.state == "done"
    assert second.wait().ok


@pytest.mark.parametrize("name, kind", [
    ("truncated.pt", lf.CORRUPT_ZIP),  # torch says only "[Errno 22] Invalid argument"
    ("malicious.pt", lf.WEIGHTS_ONLY),
    ("tinynet_whole_model.pt", lf.WEIGHTS_ONLY),
    ("tiny_vit_torchscript.pt", lf.TORCHSCRIPT),
    ("tiny_vit_legacy.pt", "ok"),
])
def test_repository_samples(name, kind):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {name} not present")
    r = attempt_load(path)
    assert r.kind == kind
    if name == "malicious.pt":  # torch prints builtins.exec as plain "exec"
        assert "builtins.exec" in r.failure.details["globals"]["dangerous"]
    if name == "tinynet_whole_model.pt":
        assert "models.TinyNet" in r.failure.details["globals"]["dangerous"]
        _no_code_advice(r.failure)


# -- the unsafe path's sandbox ------------------------------------------------------------

def test_child_env_for_unsafe_loads_drops_credentials():
    base = {"PATH": "/usr/bin", "HOME": "/home/u", "HF_TOKEN": "x", "SSH_AUTH_SOCK": "/s",
            "AWS_SECRET_ACCESS_KEY": "k", "WANDB_API_KEY": "w", "TORCH_HUB_TOKEN": "t",
            "CUDA_VISIBLE_DEVICES": "1", "MY_APP_SECRET_VALUE": "s", "RANDOM_VAR": "r",
            "PYTHONPATH": "/proj"}
    env = load_sandbox.child_env(unsafe=True, base=base)
    assert set(env) >= {"PATH", "HOME", "CUDA_VISIBLE_DEVICES"}
    for gone in ("HF_TOKEN", "SSH_AUTH_SOCK", "AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY",
                 "TORCH_HUB_TOKEN", "MY_APP_SECRET_VALUE", "RANDOM_VAR"):
        assert gone not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [load_sandbox.package_root(), "/proj"]
    safe = load_sandbox.child_env(unsafe=False, base=base)
    assert safe["HF_TOKEN"] == "x"  # a weights_only load runs no code of the file


_REPORT = ("import os, resource, json\n"
           "fds = [os.path.realpath('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')]\n"
           "json.dump({{'pid': os.getpid(), 'env': sorted(os.environ), 'cwd': os.getcwd(),\n"
           "           'as': resource.getrlimit(resource.RLIMIT_AS)[0], 'fds': fds}},\n"
           "          open({out!r}, 'w'))\n")


def test_unsafe_load_runs_in_a_scrubbed_limited_child(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    out = tmp_path / "seen.json"
    save_calling(tmp_path / "spy.pt", exec, _REPORT.format(out=str(out)))
    with open(tmp_path / "inherited", "w"):  # an fd of ours the child must not get
        r = attempt_load(tmp_path / "spy.pt", LoadPolicy(weights_only=False, map_location="cpu"),
                         consent=True)
    assert r.ok, r.failure
    import json

    seen = json.loads(out.read_text())
    assert seen["pid"] != os.getpid()
    assert "HF_TOKEN" not in seen["env"] and "SSH_AUTH_SOCK" not in seen["env"]
    assert seen["cwd"] != os.getcwd() and "pttui-load-" in seen["cwd"]
    assert seen["as"] != -1  # RLIMIT_AS is set
    assert str((tmp_path / "inherited").resolve()) not in seen["fds"]


def test_child_crash_by_signal_is_classified(tmp_path):
    save_calling(tmp_path / "crash.pt", exec, "import os, signal\n"
                 "os.kill(os.getpid(), signal.SIGSEGV)")
    r = attempt_load(tmp_path / "crash.pt", LoadPolicy(weights_only=False), consent=True)
    assert r.kind == lf.CRASHED and r.failure.details["signal"] == "SIGSEGV"


def test_sigkill_nobody_sent_reads_as_the_oom_killer():
    f = lf.crashed(-signal.SIGKILL, "", killed_by_us=False)
    assert f.kind == lf.OUT_OF_MEMORY and "out-of-memory killer" in f.explanation


# -- where a GPU exists --------------------------------------------------------------------

@pytest.mark.gpu
def test_cuda_file_keep_loads_onto_the_gpu(files):
    r = attempt_load(files / "cuda.pt", LoadPolicy(map_location="keep"))
    assert r.ok and {t["device"] for t in r.summary["tensors"]} == {"cuda:0"}
    auto = attempt_load(files / "plain.pt")
    assert auto.policy["map_location"] == "cuda"
    assert {t["device"] for t in auto.summary["tensors"]} == {"cuda:0"}


def test_fix_options_are_one_set_of_words_for_the_cli_and_the_shell():
    from pttui.core.load.failures import Fix
    from pttui.core.load.policy import LoadPolicy

    policy = LoadPolicy(allow_globals=("argparse.Namespace",), map_location="cpu")
    allow = Fix("allow it", {"allow_globals": ("collections.OrderedDict",)})
    assert policy.fix_options(allow) == [
        "--map-location", "cpu", "--allow", "argparse.Namespace",
        "--allow", "collections.OrderedDict"]
    assert policy.fix_options(Fix("more memory", force=True)) == [
        "--map-location", "cpu", "--allow", "argparse.Namespace", "--force"]
    assert policy.fix_options(Fix("read the docs")) is None  # nothing an option can do
    assert policy.fix_options(Fix("bad", {"map_location": "tpu"})) is None  # refused
    unsafe = Fix("run it", {"weights_only": False}, unsafe=True)
    assert policy.fix_options(unsafe)[-1] == "--unsafe-weights-only-false"
