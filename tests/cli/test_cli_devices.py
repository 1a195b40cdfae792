"""``pttui devices --for FILE`` on made-up machines (the planner's own figures are
compared with accelerate in tests/load/test_fit_plan.py)."""

from __future__ import annotations

import argparse
import json

import pytest

from pttui.clicmds import devices as cmd
from pttui.core.device import devices
from pttui.core.device.devices import CpuInfo, DeviceSnapshot, GpuInfo, GpuProcess
from tests.helpers import SAMPLES

MIB = 1 << 20
SQUEEZE = str(SAMPLES / "squeezenet1_1.pt")  # 4.7 MiB of float32


def _args(**kw):
    base = {"json": False, "file": SQUEEZE, "dtype": None, "select": None}
    return argparse.Namespace(**(base | kw))


def _machine(monkeypatch, free: list[int], ram: int, procs=None):
    gpus = [GpuInfo(i, i, name="Fake GPU", uuid=f"GPU-{i}", memory_total=f + 100 * MIB,
                    memory_used=100 * MIB, memory_free=f, processes=procs or [])
            for i, f in enumerate(free)]
    snap = DeviceSnapshot(CpuInfo(2, 2, 2, 2 * ram, ram), gpus, "nvml", None)
    monkeypatch.setattr(devices, "snapshot", lambda torch_uuids=None: snap)


def test_two_small_gpus_split_the_weights(monkeypatch, capsys):
    ctx = 512 * MIB
    _machine(monkeypatch, [ctx + 5 * MIB, ctx + 5 * MIB], ram=1024 * MIB)
    assert cmd.run(_args(json=True)) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["kind"] == "gpus" and plan["verdict"].startswith("needs 2 GPUs: cuda:0 ")
    assert set(plan["per_device"]) == {"0", "1"}
    assert set(plan["device_map"].values()) == {0, 1}
    assert plan["map_location"] == 'map_location="cpu", mmap=True'
    assert plan["cast"]["bytes"] * 2 == plan["bytes"]
    # accelerate keeps room for the largest layer on the first GPU: so does the plan
    assert plan["per_device"]["0"] < plan["per_device"]["1"]


def test_no_room_anywhere_spills_to_disk_and_exits_1(monkeypatch, capsys):
    _machine(monkeypatch, [], ram=2 * MIB)
    assert cmd.run(_args()) == 1
    out = capsys.readouterr().out
    assert "offload" in out and "to disk" in out and "max_memory = {'cpu': " in out


def test_a_casted_plan_alone_with_dtype(monkeypatch, capsys):
    _machine(monkeypatch, [], ram=1024 * MIB)
    assert cmd.run(_args(json=True, dtype="bfloat16")) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["dtype"] == "bfloat16" and plan["cast"] is None
    assert 2 * MIB < plan["bytes"] < 3 * MIB


def test_process_commands_are_shown_escaped(monkeypatch, capsys):
    hostile = GpuProcess(4242, "mallory", "python \x1b]0;pwned\x07 \u202eevil", 3 * MIB)
    _machine(monkeypatch, [8000 * MIB], ram=1024 * MIB, procs=[hostile])
    assert cmd.run(_args(file=None)) == 0
    out = capsys.readouterr().out
    assert "pid 4242" in out and "mallory" in out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b]0;pwned" in out


@pytest.mark.gpu
def test_the_plan_on_a_real_gpu(capsys):
    devices.use_nvml(None)
    assert cmd.run(_args(json=True)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["gpus"] and doc["gpus"][0]["cuda_index"] == 0
    assert doc["plan"]["kind"] == "gpu" and doc["plan"]["device_map"] == {"": 0}
