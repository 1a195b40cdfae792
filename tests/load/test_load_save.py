"""Loads that keep their tensors: the child writes a .safetensors file, never a pickle;
an unsafe load also runs without the network where the kernel allows it."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pttui.core.load import failures as lf
from pttui.core.load import sandbox as load_sandbox
from pttui.core.load import LoadAttempt, LoadPolicy, attempt_load
from pttui.core.base.meta import ReadError
from pttui.core.read.reader import open_checkpoint
from tests.helpers import SAMPLES, run_cli
from tests.load.test_loading import save_calling, state_dict

UNSAFE = LoadPolicy(weights_only=False, map_location="cpu")


def _flat(obj, prefix=""):
    """Every tensor under dicts and lists, with dotted keys (as the load summary names them)."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, (list, tuple)) else ())
    out = {}
    for k, v in items:
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _partials(folder):
    return [n for n in os.listdir(folder) if "pttui-partial" in n]


def test_unsafe_load_of_a_whole_model_saves_its_state_dict(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SAMPLES))  # where the file's class lives
    # importing models.py leaves a marker in the marker folder, or in the temp folder of a
    # process that has none (an unsafe load's child gets TMPDIR, not PTTUI_* variables)
    child_tmp = tmp_path / "child-tmp"
    child_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(child_tmp))
    monkeypatch.setenv("PTTUI_SAMPLE_MARKER_DIR", str(tmp_path))
    out = tmp_path / "weights.safetensors"
    r = attempt_load(SAMPLES / "tinynet_whole_model.pt", UNSAFE, consent=True, save_to=out)
    assert r.ok, r.failure
    assert os.listdir(child_tmp) == ["pttui_models_imported"]  # the load ran the file's import
    assert r.saved["path"] == str(out) and r.saved["tensors"] == 16
    sys.path.insert(0, str(SAMPLES))
    try:
        model = torch.load(SAMPLES / "tinynet_whole_model.pt", weights_only=False)
    finally:  # leave no `models` module behind: other tests import it by path and count
        sys.path.remove(str(SAMPLES))
        sys.modules.pop("models", None)
    expected, got = model.state_dict(), load_file(out)
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["pttui.object"] == "models.TinyNet"
    assert meta["pttui.source"] == "tinynet_whole_model.pt"
    # pttui's own reader opens it, with the checkpoint's key order
    assert list(open_checkpoint(str(out)).tensors) == list(expected)
    assert _partials(tmp_path) == []


def test_training_state_saves_every_tensor_and_the_scalars(tmp_path):
    out = tmp_path / "state.safetensors"
    r = attempt_load(SAMPLES / "tiny_vit_training_state.pt", UNSAFE, consent=True, save_to=out)
    assert r.ok, r.failure
    original = torch.load(SAMPLES / "tiny_vit_training_state.pt", weights_only=False)
    flat = _flat(original)
    got = load_file(out)
    assert len(flat) > 10 and set(got) == set(flat)
    assert all(torch.equal(got[k], v) for k, v in flat.items())
    with safe_open(out, "pt") as f:
        other = json.loads(f.metadata()["pttui.other"])
    assert other["epoch"] == original["epoch"]


def test_shared_tensors_are_written_once_and_odd_ones_are_named(tmp_path):
    w = torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated, still real
        q = torch.quantize_per_tensor(torch.rand(2), 0.1, 0, torch.qint8)
    sd = {"emb.weight": w, "head.weight": w, "half": w[:2], "sparse": torch.eye(3).to_sparse(),
          "q": q}
    torch.save(sd, tmp_path / "tied.pt")
    out = tmp_path / "tied.safetensors"
    r = attempt_load(tmp_path / "tied.pt", UNSAFE, consent=True, save_to=out)
    assert r.ok, r.failure
    got = load_file(out)
    assert set(got) == {"emb.weight", "half"}
    assert torch.equal(got["half"], w[:2])
    with safe_open(out, "pt") as f:
        assert json.loads(f.metadata()["pttui.aliases"]) == {"head.weight": "emb.weight"}
    skipped = " ".join(r.saved["skipped"])
    assert r.saved["skipped_count"] == 2 and "sparse" in skipped and "quantized" in skipped


def test_a_safe_load_can_save_too(tmp_path):
    torch.save(state_dict(), tmp_path / "plain.pt")
    out = tmp_path / "plain.safetensors"
    r = attempt_load(tmp_path / "plain.pt", LoadPolicy(map_location="cpu"), save_to=out)
    assert r.ok and set(load_file(out)) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("case, words", [
    ("meta", "meta tensors hold no data"), ("suffix", r"name the file \*\.safetensors"),
    ("exists", "already exists"), ("folder", "is a folder"), ("plain_folder", "is a folder"),
    ("nofolder", "no such folder"),
    ("self", "is the checkpoint being loaded"),
])
def test_bad_destinations_are_refused_before_loading(tmp_path, case, words):
    src = tmp_path / "plain.safetensors"
    torch.save(state_dict(), tmp_path / "plain.pt")
    (tmp_path / "taken.safetensors").write_bytes(b"mine")
    (tmp_path / "dir.safetensors").mkdir()
    source, policy, dest = tmp_path / "plain.pt", LoadPolicy(map_location="cpu"), None
    dest = {"meta": tmp_path / "x.safetensors", "suffix": tmp_path / "x.pt",
            "exists": tmp_path / "taken.safetensors", "folder": tmp_path / "dir.safetensors",
            "plain_folder": tmp_path,
            "nofolder": tmp_path / "no" / "x.safetensors", "self": src}[case]
    if case == "meta":
        policy = LoadPolicy(map_location="meta")
    if case == "self":
        from safetensors.torch import save_file

        save_file(state_dict(), src)
        source = src
    with pytest.raises(ReadError, match=words):
        LoadAttempt(source, policy, save_to=str(dest))
    assert (tmp_path / "taken.safetensors").read_bytes() == b"mine"
    assert _partials(tmp_path) == []


def test_overwrite_replaces_an_existing_file(tmp_path):
    torch.save(state_dict(), tmp_path / "plain.pt")
    (tmp_path / "out.safetensors").write_bytes(b"old")
    r = attempt_load(tmp_path / "plain.pt", LoadPolicy(map_location="cpu"),
                     save_to=tmp_path / "out.safetensors", overwrite=True)
    assert r.ok and set(load_file(tmp_path / "out.safetensors")) == {"fc.weight", "fc.bias"}


def test_a_cancelled_or_failed_load_leaves_no_output(tmp_path):
    save_calling(tmp_path / "slow.pt", exec, "import time; time.sleep(60)")
    out = tmp_path / "slow.safetensors"
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    r = attempt_load(tmp_path / "slow.pt", UNSAFE, consent=True, save_to=out, cancel=cancel)
    assert r.kind == lf.CANCELLED and r.saved is None
    save_calling(tmp_path / "boom.pt", exec, "raise RuntimeError('boom')")
    r = attempt_load(tmp_path / "boom.pt", UNSAFE, consent=True, save_to=out)
    assert not r.ok and r.saved is None
    assert not out.exists() and _partials(tmp_path) == []


def test_a_failure_while_saving_is_its_own_kind():
    f = lf.classify({"type": "OSError", "message": "[Errno 28] No space left on device",
                     "stage": "save"}, fmt="torch-zip", path="x.pt")
    assert f.kind == lf.SAVE_FAILED
    assert "loaded, but saving its tensors" in f.explanation and "No space left" in f.explanation


def _namespaces_work() -> bool:
    """Can this machine give a child its own network namespace? (probed in a fork)"""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if load_sandbox.drop_network() == "isolated" else 1)
    return os.waitpid(pid, 0)[1] == 0


def test_unsafe_load_has_no_network_where_the_kernel_allows(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    seen = tmp_path / "net.json"
    probe = ("import socket, json\n"
             "try:\n"
             f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); got = 'connected'\n"
             "except OSError as e:\n"
             "    got = type(e).__name__ + ': ' + str(e)\n"
             f"json.dump(got, open({str(seen)!r}, 'w'))\n")
    save_calling(tmp_path / "net.pt", exec, probe)
    # positive control: the same probe, run here, reaches the server
    exec(probe)  # noqa: S102 - our own code
    assert json.loads(seen.read_text()) == "connected"
    seen.unlink()
    r = attempt_load(tmp_path / "net.pt", UNSAFE, consent=True)
    server.close()
    assert r.ok, r.failure
    if _namespaces_work():
        assert r.policy["network"] == "isolated"
        assert json.loads(seen.read_text()) != "connected"
    else:
        assert r.policy["network"].startswith("not isolated: ")


def test_safe_loads_keep_the_network_setting_out_of_the_report(tmp_path):
    torch.save(state_dict(), tmp_path / "plain.pt")
    r = attempt_load(tmp_path / "plain.pt", LoadPolicy(map_location="cpu"))
    assert r.ok and "network" not in r.policy


# -- CLI ----------------------------------------------------------------------------------

def test_cli_unsafe_load_with_save_tensors(tmp_path):
    torch.save({"model": state_dict(), "epoch": 2}, tmp_path / "c.pt")
    out = tmp_path / "c.safetensors"
    p = run_cli("load", str(tmp_path / "c.pt"), "--unsafe-weights-only-false",
                "--i-trust-this-file", "--save-tensors", str(out), "--map-location", "cpu")
    assert p.returncode == 0, p.stderr
    assert f"saved     {out}: 2 tensors" in p.stdout and "network of the load process" in p.stdout
    assert set(load_file(out)) == {"model.fc.weight", "model.fc.bias"}
    again = run_cli("load", str(tmp_path / "c.pt"), "--save-tensors", str(out), "--json")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    js = run_cli("load", str(tmp_path / "c.pt"), "--save-tensors", str(out), "--overwrite",
                 "--json", "--map-location", "cpu")
    assert js.returncode == 0 and json.loads(js.stdout)["saved"]["tensors"] == 2


def test_cli_save_tensors_option_errors(tmp_path):
    torch.save(state_dict(), tmp_path / "c.pt")
    p = run_cli("load", str(tmp_path / "c.pt"), "--overwrite")
    assert p.returncode == 2 and "--overwrite only applies to --save-tensors" in p.stderr
    p = run_cli("load", str(tmp_path / "c.pt"), "--save-tensors", str(tmp_path / "x.safetensors"),
                "--map-location", "meta")
    assert p.returncode == 2 and "meta tensors hold no data" in p.stderr
