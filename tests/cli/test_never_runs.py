"""Reading a file never runs its pickle and never imports a module it names."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pttui.core.read.pickle import globalscan
from pttui.core.read.reader import open_checkpoint

from tests.helpers import run_cli

EVIL_MODULE = textwrap.dedent("""
    import os
    open(os.path.join(os.environ["MARKER_DIR"], "imported"), "w").write("x")

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + os.path.join(os.environ["MARKER_DIR"], "ran"),))

    class Config:
        def __init__(self):
            self.lr = 0.1
""")


@pytest.fixture()
def evil(tmp_path):
    """A checkpoint whose pickle calls os.system and instantiates a class from a module
    that leaves a marker when imported; both markers go to tmp_path/markers."""
    mod_dir, markers = tmp_path / "mods", tmp_path / "markers"
    mod_dir.mkdir()
    markers.mkdir()
    (mod_dir / "evilmod.py").write_text(EVIL_MODULE)
    env = {"PYTHONPATH": f"{mod_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "MARKER_DIR": str(markers)}
    path = tmp_path / "evil.pt"
    make = (f"import sys, torch, evilmod; torch.save({{'w': torch.ones(2), 'p': evilmod.Payload(),"
            f" 'cfg': evilmod.Config()}}, {str(path)!r})")
    subprocess.run([sys.executable, "-c", make], env={**os.environ, **env}, check=True)
    for f in markers.iterdir():
        f.unlink()  # saving imported evilmod; start clean
    return path, markers, env


def test_inspect_neither_runs_nor_imports(evil):
    path, markers, env = evil
    res = run_cli("inspect", str(path), "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert sorted(os.listdir(markers)) == []
    # both: evilmod.Config is no data class pttui can vouch for (importing its module runs
    # code, as the marker shows), so it is never offered for allow-listing
    assert doc["globals"]["dangerous"] == ["evilmod.Config", "posix.system"]
    assert doc["globals"]["blocked"] == []
    assert [t["key"] for t in doc["tensors"]] == ["w"]


def test_positive_control_a_full_load_does_both(evil):
    """Proves the markers would appear: torch.load(weights_only=False) runs and imports."""
    path, markers, env = evil
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True)
    assert sorted(os.listdir(markers)) == ["imported", "ran"]


def test_reader_in_process_leaves_sys_modules_alone(evil):
    path, markers, env = evil
    before = set(sys.modules)
    ckpt = open_checkpoint(str(path))
    assert "evilmod" not in sys.modules and set(sys.modules) - before <= {"_compat_pickle"}
    assert ckpt.globals.dangerous == ["evilmod.Config", "posix.system"]


@pytest.mark.parametrize("payload", [
    "cbuiltins\neval\n(S'1+1'\ntR.",                     # GLOBAL + REDUCE
    "(cos\nsystem\nS'echo hi'\no.",                       # OBJ
    "(S'echo hi'\nios\nsystem\n.",                        # INST
])
def test_old_protocol_payloads_are_inert(tmp_path, payload):
    """Protocol-0 gadgets, wrapped as a legacy torch stream, come back as inert stand-ins."""
    import pickle

    from pttui.core.read.torchfile import LEGACY_MAGIC, LEGACY_PROTOCOL

    p = tmp_path / "legacy_evil.pt"
    with open(p, "wb") as f:
        for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(payload.encode())
        pickle.dump([], f, protocol=2)
    ckpt = open_checkpoint(str(p))
    assert ckpt.globals.dangerous and not ckpt.containers


def test_allowed_list_matches_installed_torch():
    from torch import _weights_only_unpickler as wo

    theirs = set()
    for obj, name in [(k, k) for k in wo._get_allowed_globals()]:
        theirs.add(name)
    ours = set(globalscan.ALLOWED)
    assert theirs <= ours, theirs - ours
    # Names a newer torch allows may be listed; they must not exist in this torch at all
    # (an older torch cannot have refused something it does not have).
    for name in ours - theirs:
        module, _, attr = name.rpartition(".")
        assert module.split(".")[0] == "torch", name
        mod = importlib.import_module(module)
        assert not hasattr(mod, attr), f"{name} exists here but weights_only refuses it"


def test_classification_rules():
    c = globalscan.classify
    assert c("torch._utils._rebuild_tensor_v2", True) == "allowed"
    assert c("argparse.Namespace", False) == "blocked"
    assert c("argparse.Namespace", True) == "blocked"
    assert c("numpy.dtypes.Float64DType", True) == "blocked"
    assert c("builtins.eval", True) == "dangerous"
    assert c("posix.system", True) == "dangerous"
    # allow-list semantics: what pttui has not vouched for is dangerous, called or not
    assert c("mypkg.models.Net", False) == "dangerous"
    assert c("mypkg.utils.run", True) == "dangerous"
    assert c("torch.nn.modules.module.Module.__init__.__globals__", True) == "dangerous"
    for name in ("torch.utils.collect_env.run", "torch.hub.load", "torch.load",
                 "torch.ops.load_library", "torch.cuda.memory._record_memory_history",
                 "copyreg._reconstructor", "builtins.getattr", "builtins.object",
                 "pickle.loads", "urllib.request.urlopen", "ctypes.CDLL", "shutil.rmtree",
                 "numpy.load", "numpy.testing._private.utils.runstring", "fractions.Fraction",
                 "torch.nn.modules.linear.Linear", "omegaconf.dictconfig.DictConfig",
                 "numpy.dtypes.Float64DType.__init__", "numpy.dtypes.", "__torch__.Net"):
        assert c(name, False) == c(name, True) == "dangerous", name
