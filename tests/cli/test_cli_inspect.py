"""``pttui inspect`` and ``pttui [DIR]`` as a user and a script see them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli

SAMPLES = Path(__file__).resolve().parents[2] / "sample_checkpoints"


@pytest.fixture()
def ckpt(tmp_path):
    path = tmp_path / "run.ckpt"
    layers = {f"model.layers.{i}.attn.weight": torch.zeros(8, 8) for i in range(4)}
    torch.save({"epoch": 3, "state_dict": {**layers, "model.head.weight": torch.zeros(2, 8)}},
               path)
    return path


def test_json_contract(ckpt):
    res = run_cli("inspect", str(ckpt), "--json")
    assert res.returncode == 0 and res.stderr == ""
    doc = json.loads(res.stdout)
    assert set(doc) == {"path", "format", "containers", "selected", "tensors", "globals", "other"}
    assert doc["format"] == "torch-zip"
    assert doc["selected"] == ["state_dict"]
    assert doc["containers"][0] == {"path": ["state_dict"], "tensors": 5, "params": 4 * 64 + 16,
                                    "kind": "state_dict"}
    assert doc["tensors"][0] == {"key": "model.layers.0.attn.weight", "shape": [8, 8],
                                 "dtype": "float32", "device": "cpu", "nbytes": 256}
    assert set(doc["globals"]) == {"allowed", "blocked", "dangerous"}
    assert doc["other"] == {"epoch": 3}


def test_human_output_collapses_repeated_blocks(ckpt):
    res = run_cli("inspect", str(ckpt))
    assert res.returncode == 0
    assert "{0..3}" in res.stdout
    assert "epoch = 3" in res.stdout
    assert "container: state_dict" in res.stdout


def test_select_and_bad_select(ckpt):
    res = run_cli("inspect", str(ckpt), "--json", "--select", "state_dict")
    assert json.loads(res.stdout)["selected"] == ["state_dict"]
    res = run_cli("inspect", str(ckpt), "--select", "ema")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no container ema" in res.stderr


@pytest.mark.parametrize("content, needle", [(b"", "empty"), (b"hello\n", "text file"),
                                             (b"\x00\x01\x02\x03" * 8, "not a format")])
def test_unreadable_exit_2_one_line_no_traceback(tmp_path, content, needle):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    res = run_cli("inspect", str(p))
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and needle in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file_and_debug_traceback(tmp_path):
    res = run_cli("inspect", str(tmp_path / "nope.pt"))
    assert res.returncode == 2 and "no such file" in res.stderr
    res = run_cli("--debug", "inspect", str(tmp_path / "nope.pt"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_usage_errors_are_one_line(tmp_path):
    res = run_cli("inspect")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    res = run_cli("inspect", "x.pt", "--depth", "many")
    assert res.returncode == 2 and res.stderr.count("\n") == 1


def test_help_names_the_terminal_ui_and_imports_nothing_heavy():
    """`pttui --help` says what `pttui FOLDER` does (the main feature) and its options,
    and answers at once: it imports neither torch nor Textual (no timing: CPUs differ)."""
    res = run_cli("--help")
    assert res.returncode == 0 and res.stderr == ""
    usage = res.stdout.split("\n\n")[0]
    assert usage.startswith("usage: pttui [FOLDER | FILE]") and "--no-mouse" in usage
    assert "pttui COMMAND" in usage
    assert "the terminal UI:" in res.stdout and "keyboard only" in res.stdout
    for command in ("inspect", "check", "fix", "load", "shell"):
        assert f"\n    {command} " in res.stdout
    code = ("import sys\nsys.argv = ['pttui', '--help']\nfrom pttui.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'textual', 'prompt_toolkit') if m in sys.modules),"
            " file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stderr.strip() == "[]", res.stderr


def test_a_folder_holding_one_sharded_set_opens_as_that_set(tmp_path):
    """The TUI lists such a folder as one checkpoint; inspect, check and load open the
    index inside it too. A folder of several sets says which ones, in one line."""
    folder = SAMPLES / "tiny_vit_sharded"
    res = run_cli("inspect", str(folder), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == "sharded" and len(doc["tensors"]) == 32
    assert doc["path"].endswith("model.safetensors.index.json")
    res = run_cli("check", str(folder), "--model", f"ref:{SAMPLES / 'tiny_vit.safetensors'}")
    assert res.returncode == 0 and "strict load: OK" in res.stdout, res.stderr
    res = run_cli("load", str(folder))  # refused with the sharded set's own reason
    assert "is a folder" not in res.stderr and "sharded checkpoint" in res.stderr
    two = tmp_path / "two"
    shutil.copytree(folder, two)
    shutil.copy(two / "model.safetensors.index.json", two / "other.safetensors.index.json")
    res = run_cli("inspect", str(two))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "2 sharded sets (model.safetensors.index.json, other.safetensors" in res.stderr


def test_piped_listing_keeps_its_columns_with_long_names(tmp_path):
    long = "a-very-long-run-name-from-a-sweep-lr3e-4-wd0.05-seed1234-epoch0099-final.pt"
    for name in ("x.pt", "medium-length-name-for-the-run.pt", long):
        torch.save({"w": torch.zeros(3)}, tmp_path / name)
    res = run_cli(str(tmp_path))
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines()[1:] if line.startswith("  ")]
    assert len(rows) == 3
    assert len({row.index(" KiB") for row in rows}) == 1, rows
    assert len({row.index("1 tensor") for row in rows}) == 1, rows
    elided = next(row for row in rows if "…" in row)
    assert elided.split()[0].startswith("a-very-long") and elided.split()[0].endswith(".pt")
    assert long not in res.stdout


@pytest.mark.parametrize("width", [0, 1, 2, 5, 10, 11])
def test_middle_elided_keeps_both_ends(width):
    from pttui.core.base.humanize import middle_elided

    text = "abcdefghijk.pt"
    cut = middle_elided(text, width)
    assert len(cut) == width
    if width >= 2:
        assert cut[0] == "a" and "…" in cut
    if width >= 3:
        assert cut.endswith("t")
    assert middle_elided(text, len(text)) == text


def test_folder_listing_marks_what_needs_attention(tmp_path, ckpt):
    import argparse

    torch.save({"w": torch.zeros(1), "args": argparse.Namespace(a=1)}, tmp_path / "needs.pt")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04garbage")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    res = run_cli(str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    assert "5 tensors" in lines["run.ckpt"]
    assert "weights_only refuses" in lines["needs.pt"]
    assert "unreadable" in lines["broken.pt"]
    assert "sub/" in lines and "notes.txt" not in lines
    res = run_cli(str(ckpt))  # a file: its reading
    assert res.returncode == 0 and "container: state_dict" in res.stdout


def test_hostile_keys_cannot_drive_the_terminal(tmp_path):
    """Escape sequences and lone surrogates in a file's keys print as visible escapes."""
    path = tmp_path / "esc.pt"
    torch.save({"a\x1b[31mred\udc80": torch.zeros(2), "note": "x\x1b[2Jy"}, path)
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout
    assert "a\\x1b[31mred\\udc80" in res.stdout


def test_tied_weights_are_shown_and_counted_once(tmp_path):
    shared = torch.zeros(40, 40)  # 6,400 bytes, saved once
    base = torch.arange(20.0)
    torch.save({"a.weight": shared, "b.weight": shared, "c.weight": shared,
                "row": base[5:10], "all": base, "bias": torch.zeros(3)}, tmp_path / "tied.pt")
    res = run_cli("inspect", str(tmp_path / "tied.pt"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "tied:  b.weight = c.weight = a.weight" in out
    assert "shared storage:  row, all (views of one 80 B storage)" in out
    # 6,400 + 80 + 12 bytes on disk; 3 x 6,400 + 20 + 80 + 12 counting each tensor apart
    assert "6.3 KiB on disk (18.9 KiB counting each tensor apart)" in out
    assert "dtypes:  float32 6.3 KiB" in out
    # elements: 1,600 once + the views 5 + 20 + 3 (views are different tensors: counted)
    assert "1.6k elements (4.8k counting tied names apart)" in out
    doc = json.loads(run_cli("inspect", str(tmp_path / "tied.pt"), "--json").stdout)
    assert [t["nbytes"] for t in doc["tensors"]] == [6400, 6400, 6400, 20, 80, 12]  # per tensor


def test_untied_file_says_nothing_about_ties(ckpt):
    out = run_cli("inspect", str(ckpt)).stdout
    assert "tied:" not in out and "shared storage" not in out
    assert "1.1 KiB on disk   container" in out  # no "counting each tensor apart" either
    assert "counting tied names apart" not in out


def test_legacy_tar_checkpoint_is_read(tmp_path):
    from tests.hostile.legacy_tar import legacy_tar_bytes

    w = torch.zeros(3, 2)
    (tmp_path / "old.pt").write_bytes(legacy_tar_bytes({"fc.weight": w, "fc.bias": torch.zeros(3),
                                                        "tied": w}))
    res = run_cli("inspect", str(tmp_path / "old.pt"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == "torch-legacy-tar"
    assert [(t["key"], t["shape"]) for t in doc["tensors"]] == [
        ("fc.weight", [3, 2]), ("fc.bias", [3]), ("tied", [3, 2])]
    text = run_cli("inspect", str(tmp_path / "old.pt")).stdout
    assert "tied:  tied = fc.weight" in text


@pytest.mark.parametrize("path, needle", [("/dev/zero", "not a regular file (a device)"),
                                          ("FIFO", "not a regular file (a pipe)")])
def test_a_device_or_pipe_is_refused_without_blocking(tmp_path, path, needle):
    import os

    if path == "FIFO":
        path = str(tmp_path / "pipe.pt")
        os.mkfifo(path)  # opening it would wait for a writer forever
    res = run_cli("inspect", path, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and needle in res.stderr
