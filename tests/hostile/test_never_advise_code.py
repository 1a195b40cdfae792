"""A file whose pickle needs code is never answered with an allow-list, in any front.

The file at the heart of it calls ``torch.utils.collect_env.run`` (a shell-command
runner under ``torch.*``); once it was classed "blocked" and ``pttui load`` suggested
``--allow torch.utils.collect_env.run``, which ran the payload. Variants reach the
callable through every opcode that calls, the memo, dotted STACK_GLOBAL names and
protocols 0 to 4.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import P, storage, tensor, torch_zip, zip_bytes  # noqa: E402

from pttui.core.read.folder import list_folder  # noqa: E402
from pttui.core.read.reader import open_checkpoint  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

RUN = ("torch.utils.collect_env", "run")


def _with_weights(payload) -> bytes:
    """{'fc.weight': a real tensor, 'cfg': payload}: a file that looks like weights."""
    p = P(2).dict().mark().str("fc.weight").value(tensor(storage("0", 6), 0, (2, 3), (3, 1)))
    p.str("cfg")
    payload(p)
    return zip_bytes(torch_zip(p.setitems().bytes(), {"0": bytes(24)}))


def _reduce(p: P) -> None:
    p.glob(*RUN).mark().str("touch pttui_pwned").tuple().reduce()


def _memo(p: P) -> None:  # the callable stored in the memo, fetched back, then called
    p.glob(*RUN).put(7).raw(b"0").get(7).mark().str("touch pttui_pwned").tuple().reduce()


def _stack_dotted(p: P) -> None:  # STACK_GLOBAL with a dotted qualified name
    p.str("torch.utils").str("collect_env.run").raw(b"\x93")
    p.mark().str("touch pttui_pwned").tuple().reduce()


def _newobj(p: P) -> None:
    p.glob(*RUN).mark().str("x").tuple().raw(b"\x81")


def _build(p: P) -> None:  # only BUILD reaches it: an instance whose __setstate__ runs
    p.glob("argparse", "Namespace").raw(b")\x81").glob(*RUN).raw(b"b")


def _referenced(p: P) -> None:  # named, never called: still not to be allow-listed
    p.glob(*RUN)


def _inst0(p: P) -> None:  # protocol-0 INST
    p.raw(b"(S'touch pttui_pwned'\nitorch.utils.collect_env\nrun\n")


def _obj(p: P) -> None:
    p.mark().glob(*RUN).str("touch pttui_pwned").raw(b"o")


PAYLOADS = {"reduce": _reduce, "memo": _memo, "stack_dotted": _stack_dotted,
            "newobj": _newobj, "build": _build, "referenced": _referenced, "inst0": _inst0,
            "obj": _obj}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("code")
    for name, payload in PAYLOADS.items():
        (d / f"{name}.pt").write_bytes(_with_weights(payload))
    return d


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_the_reader_classes_it_dangerous_however_it_is_reached(files, name):
    ckpt = open_checkpoint(str(files / f"{name}.pt"))
    assert "torch.utils.collect_env.run" in ckpt.globals.dangerous, ckpt.globals.to_json()
    assert set(ckpt.globals.blocked) <= {"argparse.Namespace"}  # the BUILD case's instance
    assert "fc.weight" in ckpt.tensors


def test_load_suggests_no_allow_list_and_runs_nothing(files, tmp_path):
    """The real torch.load refuses it; the advice is the consented load or pttui fix."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = files / "reduce.pt"
    res = run_cli("load", str(path), cwd=str(cwd))
    assert res.returncode == 1, res.stderr
    text = res.stdout + res.stderr
    assert "torch.utils.collect_env.run" in text
    assert "--allow" not in text and "safe_globals" not in text
    assert "weights_only=False)" not in text  # no snippet to paste
    assert "RUNS its code" in text
    doc = json.loads(run_cli("load", str(path), "--json", cwd=str(cwd)).stdout)
    assert "torch.utils.collect_env.run" in doc["failure"]["details"]["globals"]["dangerous"]
    fixes = doc["failure"]["fixes"]
    assert not any(f["changes"].get("allow_globals") for f in fixes)
    assert [f["changes"] for f in fixes if f["unsafe"]] == [{"weights_only": False}]
    assert not any("safe_globals" in (f.get("code") or "") or
                   "weights_only=False" in (f.get("code") or "") for f in fixes)
    assert os.listdir(cwd) == []  # the payload did not run


def test_allow_refuses_a_name_that_is_not_safe_to_allow_list(files):
    res = run_cli("load", str(files / "reduce.pt"), "--allow", "torch.utils.collect_env.run")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) <= 2 and "Traceback" not in res.stderr  # argparse: usage + one line
    assert "not on pttui's list" in lines[-1] and "torch.utils.collect_env.run" in lines[-1]


def test_check_and_inspect_say_it_needs_code(files):
    res = run_cli("inspect", str(files / "memo.pt"))
    assert res.returncode == 0, res.stderr
    assert "DANGEROUS  torch.utils.collect_env.run" in res.stdout
    assert "blocked    " not in res.stdout


def test_folder_listing_badges_it_unsafe_not_allowlist(files):
    entries = {e.name: e for e in list_folder(str(files))}
    for name in PAYLOADS:
        marks = entries[f"{name}.pt"].marks
        assert "unsafe-globals" in marks and "needs-allowlist" not in marks, (name, marks)
