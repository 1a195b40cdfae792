"""``pttui load`` and ``pttui devices`` as a user runs them: exit codes, one-line errors."""

from __future__ import annotations

import io
import json

import pytest
import torch

from pttui.cli import main
from tests.helpers import SAMPLES, run_cli
from tests.load.test_loading import save_cuda_tagged, save_with_namespace, state_dict


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.save({"model": state_dict(), "epoch": 3}, d / "plain.pt")
    save_cuda_tagged(d / "cuda.pt")
    save_with_namespace(d / "ns.pt")
    torch.save({"w": torch.zeros(50_000_000)}, d / "big.pt")
    return d


def test_loads_and_lists_tensors(ckpts):
    res = run_cli("load", str(ckpts / "plain.pt"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("loaded")
    assert "model.fc.weight" in res.stdout and "epoch=3" in res.stdout
    assert res.stderr == ""


def test_json_is_one_object(ckpts):
    res = run_cli("load", str(ckpts / "plain.pt"), "--json", "--map-location", "meta")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["kind"] == "ok" and doc["policy"]["map_location"] == "meta"
    assert {t["key"] for t in doc["summary"]["tensors"]} == {"model.fc.weight", "model.fc.bias"}


def test_cuda_file_with_keep_exits_1_and_says_what_to_run(ckpts, no_cuda):
    res = run_cli("load", str(ckpts / "cuda.pt"), "--map-location", "keep")
    assert res.returncode == 1
    assert "device_unavailable" in res.stdout
    assert f"pttui load {ckpts / 'cuda.pt'} --map-location cpu" in res.stdout
    line = one_line(res.stderr)
    assert "did not load (device_unavailable)" in line and "--map-location cpu" in line


def test_failure_as_json_exits_1(ckpts):
    res = run_cli("load", str(ckpts / "ns.pt"), "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["kind"] == "weights_only_blocked"
    assert doc["failure"]["fixes"][0]["changes"] == {"allow_globals": ["argparse.Namespace"]}
    assert "--allow argparse.Namespace" in one_line(res.stderr)


def test_allow_flag_applies_the_fix(ckpts):
    res = run_cli("load", str(ckpts / "ns.pt"), "--allow", "argparse.Namespace")
    assert res.returncode == 0, res.stderr
    assert "args.lr=0.1" in res.stdout


def test_missing_path_exits_2_with_one_line(tmp_path):
    res = run_cli("load", str(tmp_path / "nope.pt"))
    assert res.returncode == 2
    assert "no such file" in one_line(res.stderr)


@pytest.mark.parametrize("args, words", [
    (["--map-location", "gpu"], "map_location"),
    (["--allow", "eval"], "module.Name"),
    (["--timeout", "-3"], "seconds"),
    (["--i-trust-this-file"], "--unsafe-weights-only-false"),
])
def test_bad_command_lines_exit_2(ckpts, capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        code = main(["load", str(ckpts / "plain.pt"), *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert words in one_line(capsys.readouterr().err)


def test_unsafe_without_a_terminal_needs_the_trust_flag(ckpts):
    res = run_cli("load", str(ckpts / "ns.pt"), "--unsafe-weights-only-false")
    assert res.returncode == 2
    assert "--i-trust-this-file" in one_line(res.stderr)
    ok = run_cli("load", str(ckpts / "ns.pt"), "--unsafe-weights-only-false",
                 "--i-trust-this-file")
    assert ok.returncode == 0, ok.stderr
    assert "weights_only=False" in ok.stdout


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, code", [("no\n", 2), ("", 2), ("yes\n", 0)])
def test_unsafe_on_a_terminal_asks_for_a_typed_yes(ckpts, capsys, monkeypatch, answer, code):
    monkeypatch.setattr("sys.stdin", _Tty(answer))
    assert main(["load", str(ckpts / "ns.pt"), "--unsafe-weights-only-false"]) == code
    err = capsys.readouterr().err
    assert "Type 'yes'" in err and "Traceback" not in err


def test_timeout_exits_1(ckpts):
    res = run_cli("load", str(ckpts / "big.pt"), "--timeout", "0.3", "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["kind"] == "timeout"
    one_line(res.stderr)


def test_devices_human_and_json():
    res = run_cli("devices")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("CPU") and "torch" in res.stdout
    doc = json.loads(run_cli("devices", "--json").stdout)
    assert doc["ram"]["total"] > 0 and doc["torch"]["torch"] == torch.__version__
    assert "plan" not in doc
    if not doc["gpus"]:
        assert doc["reason"]


def test_devices_for_a_file_plan_from_its_header():
    sample = str(SAMPLES / "squeezenet1_1.pt")
    res = run_cli("devices", "--for", sample, "--json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)["plan"]
    assert plan["file"] == sample and plan["fits"] and plan["bytes"] > 4 * 2**20
    assert set(plan) >= {"bytes", "verdict", "device_map", "max_memory", "map_location"}
    assert plan["cast"]["dtype"] == "bfloat16"
    text = run_cli("devices", "--for", sample, "--dtype", "float16")
    assert text.returncode == 0 and "plan    " in text.stdout and "(float16)" in text.stdout
    missing = run_cli("devices", "--for", "no/such.pt")
    assert missing.returncode == 2
    one_line(missing.stderr)


@pytest.mark.gpu
def test_cuda_file_with_keep_loads_on_a_gpu(ckpts):
    res = run_cli("load", str(ckpts / "cuda.pt"), "--map-location", "keep", "--json")
    assert res.returncode == 0, res.stderr
    assert {t["device"] for t in json.loads(res.stdout)["summary"]["tensors"]} == {"cuda:0"}
