"""Device snapshot: the real one on this box, and NVML field guarding through a fake."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from pttui.core.device import devices
from pttui.core.device.devices import CpuInfo, DeviceSnapshot, GpuInfo, cuda_ordinals, fits

GIB = 1 << 30


class NotSupported(Exception):
    """Stands in for pynvml.NVMLError_NotSupported."""


class FakeNvml:
    """Two GPUs; the second one supports neither utilisation nor temperature."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, fail_init: bool = False):
        self.fail_init = fail_init
        self.calls = {"init": 0, "handle": 0, "shutdown": 0}

    def nvmlInit(self):
        self.calls["init"] += 1
        if self.fail_init:
            raise RuntimeError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.calls["shutdown"] += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        self.calls["handle"] += 1
        return f"h{i}"

    def nvmlSystemGetDriverVersion(self):
        return "999.1"

    def nvmlDeviceGetName(self, h):
        return b"Fake A100" if h == "h0" else "Fake T4"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-aaaa-1111" if h == "h0" else "GPU-bbbb-2222"

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=80 * GIB, used=30 * GIB, free=50 * GIB) if h == "h0" \
            else SimpleNamespace(total=16 * GIB, used=1 * GIB, free=15 * GIB)

    def nvmlDeviceGetUtilizationRates(self, h):
        if h == "h1":
            raise NotSupported("Not Supported")
        return SimpleNamespace(gpu=42, memory=10)

    def nvmlDeviceGetTemperature(self, h, sensor):
        if h == "h1":
            raise NotSupported("Not Supported")
        return 61


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nv = FakeNvml()
    devices.use_nvml(nv)
    yield nv
    devices.use_nvml(None)


def test_real_snapshot_on_this_box_never_raises():
    devices.use_nvml(None)
    snap = devices.snapshot()
    assert snap.cpu.ram_total > 0 and 0 < snap.cpu.ram_available <= snap.cpu.ram_total
    assert snap.cpu.cores >= 1
    if snap.source is None:  # no NVML here: no GPUs and a reason, not an exception
        assert snap.gpus == [] and snap.reason.startswith("NVML not available")
    j = snap.to_json()
    assert j["ram"]["total"] == snap.cpu.ram_total and j["ram"]["available"] > 0
    assert j["ram"]["swap_total"] is not None


def test_fake_nvml_fields_are_guarded(fake):
    snap = devices.snapshot()
    assert snap.source == "nvml" and snap.driver == "999.1" and snap.reason is None
    a, t4 = snap.gpus
    assert (a.index, a.cuda_ordinal, a.name, a.utilization, a.temperature) == (
        0, 0, "Fake A100", 42, 61)
    assert (a.memory_total, a.memory_used, a.memory_free) == (80 * GIB, 30 * GIB, 50 * GIB)
    assert (t4.name, t4.utilization, t4.temperature, t4.memory_free) == (
        "Fake T4", None, None, 15 * GIB)
    assert any("CUDA_DEVICE_ORDER" in n for n in snap.notes)  # mixed models


def test_nvml_is_initialised_once_and_handles_are_kept(fake):
    t0 = time.monotonic()
    for _ in range(50):
        devices.snapshot()
    assert fake.calls["init"] == 1 and fake.calls["handle"] == 2
    assert time.monotonic() - t0 < 2.0  # cheap enough to poll every 2 s


def test_nvml_init_failure_means_no_gpus_and_a_reason(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # no torch fallback either
    devices.use_nvml(FakeNvml(fail_init=True))
    try:
        snap = devices.snapshot()
    finally:
        devices.use_nvml(None)
    assert snap.gpus == [] and snap.source is None
    assert snap.reason == "NVML not available: Driver Not Loaded"


def test_cuda_visible_devices_maps_ordinals(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    snap = devices.snapshot()
    assert [(g.index, g.cuda_ordinal) for g in snap.gpus] == [(0, None), (1, 0)]
    assert snap.visible_gpus[0].name == "Fake T4" and snap.gpu(0).index == 1


@pytest.mark.parametrize("visible, expected", [
    (None, [0, 1, 2]),
    ("", [None, None, None]),
    ("-1", [None, None, None]),
    ("2,0", [1, None, 0]),
    ("GPU-bbbb", [None, 0, None]),
    ("0,7,1", [0, None, None]),  # CUDA stops at the first entry that names no device
    ("1,1", [None, 0, None]),
])
def test_cuda_ordinals(visible, expected):
    ordinals, _notes, _mig = cuda_ordinals(visible, ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"])
    assert ordinals == expected


def test_cuda_ordinals_explains_what_it_ignored():
    _, notes, _ = cuda_ordinals("0,7", ["GPU-aaaa"])
    assert notes and "'7'" in notes[0]
    _, mig, _ = cuda_ordinals("MIG-1234", ["GPU-aaaa"])
    assert "MIG" in mig[0] and "no such instance" in mig[0]


def _snap(gpus):
    return DeviceSnapshot(CpuInfo(8, 4, 8, 64 * GIB, 10 * GIB), gpus, "nvml", None)


def test_fits_on_cpu_gpu_and_meta():
    gpu = GpuInfo(0, 0, "A100", memory_total=80 * GIB, memory_used=70 * GIB,
                  memory_free=10 * GIB)
    snap = _snap([gpu])
    small, big = fits(4 * GIB, snap, "cpu"), fits(20 * GIB, snap, "cpu")
    assert small.fits and not big.fits and big.available == 10 * GIB
    assert "20.0 GiB" in big.reason and "10.0 GiB" in big.reason
    assert fits(4 * GIB, snap).device == "cuda:0"  # auto prefers a visible GPU
    assert not fits(20 * GIB, snap, "cuda").fits
    assert fits(20 * GIB, snap, "meta").fits
    missing = fits(1, snap, "cuda:3")
    assert missing.fits is False and "cuda:3" in missing.reason
    assert fits(1, _snap([]), "auto").device == "cpu"


def test_fits_is_unknown_when_free_memory_is_na():
    snap = _snap([GpuInfo(0, 0, "old GPU")])
    f = fits(GIB, snap, "cuda:0")
    assert f.fits is None and "N/A" in f.reason


def test_torch_versions_reports_without_raising():
    import torch

    v = devices.torch_versions()
    assert v.torch == torch.__version__ and v.cuda == torch.version.cuda
    assert v.cuda_available == torch.cuda.is_available() and v.error is None


def test_format_bytes():
    assert devices.format_bytes(None) == "N/A"
    assert devices.format_bytes(512) == "512 B"
    assert devices.format_bytes(3 * GIB // 2) == "1.5 GiB"


@pytest.mark.gpu
def test_real_gpus_are_listed_where_cuda_exists():
    devices.use_nvml(None)
    snap = devices.snapshot()
    assert snap.gpus and snap.visible_gpus[0].cuda_ordinal == 0
    assert snap.visible_gpus[0].memory_total > 0
    assert fits(1, snap, "cuda:0").fits


@pytest.mark.gpu
def test_torch_fallback_when_nvml_is_missing():
    import torch

    assert torch.cuda.is_available()
    devices.use_nvml(FakeNvml(fail_init=True))
    try:
        snap = devices.snapshot()
    finally:
        devices.use_nvml(None)
    assert snap.source == "torch" and snap.gpus[0].memory_total > 0
    assert "NVML not available" in snap.reason


# -- who uses a GPU, MIG, CUDA's numbering, host memory ---------------------------------

class BusyNvml(FakeNvml):
    """Three GPUs in PCI order: a T4, an A100 used by this very process (exclusive
    mode), and an A100 split into two MIG instances."""

    def __init__(self):
        super().__init__()
        self.process_calls = 0

    def nvmlDeviceGetCount(self):
        return 3

    def nvmlDeviceGetName(self, h):
        return {"h0": "Fake T4", "h1": "Fake A100", "h2": "Fake A100",
                "m0": "Fake A100 MIG 3g.40gb", "m1": "Fake A100 MIG 1g.10gb"}[h]

    def nvmlDeviceGetUUID(self, h):
        return {"h0": "GPU-t4", "h1": "GPU-a1", "h2": "GPU-a2",
                "m0": "MIG-m0", "m1": "MIG-m1"}[h]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=40 * GIB, used=8 * GIB, free=32 * GIB)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=5, memory=1)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return (7, 5) if h == "h0" else (8, 0)

    def nvmlDeviceGetComputeMode(self, h):
        return 3 if h == "h1" else 0

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self.process_calls += 1
        if h == "h1":
            import os

            return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 * GIB),
                    SimpleNamespace(pid=2**22 + 7, usedGpuMemory=2**64 - 1)]
        return []

    def nvmlDeviceGetMigMode(self, h):
        return (1, 1) if h == "h2" else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, k):
        if k > 1:
            raise NotSupported("Not Found")
        return f"m{k}"


@pytest.fixture
def busy(monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(name, raising=False)
    nv = BusyNvml()
    devices.use_nvml(nv)
    yield nv
    devices.use_nvml(None)


def _by_uuid(snap):
    return {g.uuid: g for g in snap.gpus}


def test_processes_name_their_user_and_command(busy):
    import getpass
    import os

    snap = devices.snapshot()
    a1 = _by_uuid(snap)["GPU-a1"]
    mine, ghost = sorted(a1.processes, key=lambda p: p.pid != os.getpid())
    assert mine.pid == os.getpid() and mine.memory == 3 * GIB
    assert mine.user == getpass.getuser() and "python" in mine.command
    assert ghost.user is None and ghost.command is None and ghost.memory is None
    assert _by_uuid(snap)["GPU-t4"].processes == []
    j = snap.to_json()["gpus"]
    assert {"pid", "user", "command", "memory"} <= set(j[1]["processes"][0])


def test_process_lists_are_read_at_most_every_few_seconds(busy):
    for _ in range(10):
        devices.snapshot()
    assert busy.process_calls == 5  # 3 GPUs and 2 MIG instances, once


def test_an_exclusive_gpu_held_by_a_process_has_no_room(busy):
    snap = devices.snapshot()
    a1 = _by_uuid(snap)["GPU-a1"]
    assert a1.compute_mode == "exclusive_process" and a1.available == 0
    assert a1.memory_free == 32 * GIB
    assert not fits(GIB, snap, f"cuda:{a1.cuda_ordinal}").fits
    assert _by_uuid(snap)["GPU-t4"].available == 32 * GIB


def test_cuda_numbers_fastest_first_and_says_it_is_an_estimate(busy):
    snap = devices.snapshot()
    g = _by_uuid(snap)
    assert (g["GPU-a1"].cuda_ordinal, g["GPU-t4"].cuda_ordinal) == (0, 1)
    assert not snap.order_exact and any("PCI_BUS_ID" in n for n in snap.notes)
    assert snap.to_json()["cuda_order"] == "estimated"


def test_pci_bus_order_and_torchs_list_are_exact(busy, monkeypatch):
    exact = devices.snapshot(torch_uuids=["GPU-t4", "GPU-a1"])
    assert (_by_uuid(exact)["GPU-t4"].cuda_ordinal, _by_uuid(exact)["GPU-a1"].cuda_ordinal) \
        == (0, 1)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    pci = devices.snapshot()
    g = _by_uuid(pci)
    assert (g["GPU-t4"].cuda_ordinal, g["GPU-a1"].cuda_ordinal) == (0, 1)
    assert not any("fastest-first" in n for n in pci.notes)


def test_visible_devices_index_cudas_order_not_nvmls(busy, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    snap = devices.snapshot()
    g = _by_uuid(snap)
    assert g["GPU-t4"].cuda_ordinal == 0 and g["GPU-a1"].cuda_ordinal is None


def test_mig_instances_are_devices_of_their_own(busy, monkeypatch):
    snap = devices.snapshot()
    g = _by_uuid(snap)
    parent, m0, m1 = g["GPU-a2"], g["MIG-m0"], g["MIG-m1"]
    assert parent.mig_enabled and parent.cuda_ordinal is None and parent.available == 0
    assert (m0.mig_parent, m1.mig_parent) == (2, 2) and m0.name.endswith("3g.40gb")
    assert m0.cuda_ordinal == 2 and m1.cuda_ordinal is None  # one instance per process
    assert any("MIG" in n for n in snap.notes)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-m1,MIG-m0")
    named = devices.snapshot()
    g = _by_uuid(named)
    assert g["MIG-m1"].cuda_ordinal == 0 and g["MIG-m0"].cuda_ordinal is None
    assert g["GPU-t4"].cuda_ordinal is None
    assert any("only the first MIG instance" in n for n in named.notes)


def test_ram_without_psutil_is_memavailable_never_memfree(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psutil", None)
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       65536000 kB\nMemFree:         3800000 kB\n"
                    "MemAvailable:   21000000 kB\nSwapTotal:       2048000 kB\n"
                    "SwapFree:        1024000 kB\n")
    real = devices.meminfo
    monkeypatch.setattr(devices, "meminfo", lambda path=str(info): real(path))
    monkeypatch.setattr(devices, "_cgroup_room", lambda: None)
    cpu = devices._cpu()
    assert cpu.ram_available == 21000000 * 1024 and cpu.ram_total == 65536000 * 1024
    assert (cpu.swap_total, cpu.swap_free) == (2048000 * 1024, 1024000 * 1024)
