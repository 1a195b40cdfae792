"""What this machine can hold: CPU RAM and every GPU, cheap enough to poll every 2 s.

GPU figures come from NVML (``nvidia-ml-py``), initialised once with its handles
kept; each field is read on its own so one an old driver does not support is
``None`` (shown N/A) instead of hiding the GPU. NVML numbers GPUs physically;
torch numbers the ones ``CUDA_VISIBLE_DEVICES`` lets it see, so each GPU carries
both. Without NVML, ``torch.cuda`` is the fallback, but only when torch is already
imported: nothing here imports torch just to poll. Nothing here raises: a box
with no GPU gets an empty list and a reason.

Test seam: :func:`use_nvml` swaps in a fake NVML module (anything with the
``nvml*`` functions used below) and resets the cached state.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pttui.core.base import humanize


@dataclass(slots=True)
class CpuInfo:
    cores: int | None
    cores_physical: int | None
    cores_usable: int | None  # what this process may run on (affinity)
    ram_total: int | None
    ram_available: int | None  # also capped by a cgroup memory limit when one applies


@dataclass(slots=True)
class GpuInfo:
    index: int | None  # NVML's (physical) index; None when only torch knows the GPU
    cuda_ordinal: int | None  # torch's cuda:N under CUDA_VISIBLE_DEVICES; None = hidden
    name: str | None = None
    uuid: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    utilization: int | None = None  # percent
    temperature: int | None = None  # degrees Celsius


@dataclass(slots=True)
class DeviceSnapshot:
    cpu: CpuInfo
    gpus: list[GpuInfo]
    source: str | None  # "nvml" | "torch" | None
    reason: str | None  # why GPU figures are missing or partial
    driver: str | None = None
    notes: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)

    @property
    def visible_gpus(self) -> list[GpuInfo]:
        """GPUs torch can use, in cuda:N order."""
        return sorted((g for g in self.gpus if g.cuda_ordinal is not None),
                      key=lambda g: g.cuda_ordinal)  # type: ignore[arg-type, return-value]

    def gpu(self, ordinal: int) -> GpuInfo | None:
        return next((g for g in self.gpus if g.cuda_ordinal == ordinal), None)

    def to_json(self) -> dict[str, Any]:
        return {"cpu": asdict(self.cpu), "gpus": [asdict(g) for g in self.gpus],
                "source": self.source, "reason": self.reason, "driver": self.driver,
                "notes": list(self.notes), "taken_at": self.taken_at}


@dataclass(frozen=True, slots=True)
class Fit:
    """Whether ``needed`` bytes fit on ``device``; ``fits`` is None when unknown (N/A)."""

    fits: bool | None
    device: str
    needed: int
    available: int | None
    total: int | None
    reason: str


def format_bytes(n: int | None) -> str:
    """Sizes for people; a field NVML could not read is "N/A"."""
    return "N/A" if n is None else humanize.nbytes(n)


# -- NVML -----------------------------------------------------------------------------

class _Nvml:
    """One NVML session: init once, keep the handles, read fields per poll."""

    def __init__(self, module: Any | None, error: str | None = None) -> None:
        self.nv = module
        self.error = error
        self.handles: list[Any] | None = None
        self.driver: str | None = None

    def ready(self) -> bool:
        if self.handles is None and self.error is None:
            try:
                self.nv.nvmlInit()
                count = self.nv.nvmlDeviceGetCount()
                self.handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                self.driver = _text(_field(self.nv.nvmlSystemGetDriverVersion))
            except Exception as err:  # noqa: BLE001 - any NVML failure means "no NVML"
                self.error = f"NVML not available: {err or type(err).__name__}"
        return self.handles is not None

    def read(self) -> list[GpuInfo]:
        nv, out = self.nv, []
        for i, h in enumerate(self.handles or []):
            mem = _field(nv.nvmlDeviceGetMemoryInfo, h)
            util = _field(nv.nvmlDeviceGetUtilizationRates, h)
            temp = _field(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
            out.append(GpuInfo(
                index=i, cuda_ordinal=None,
                name=_text(_field(nv.nvmlDeviceGetName, h)),
                uuid=_text(_field(nv.nvmlDeviceGetUUID, h)),
                memory_total=_int(getattr(mem, "total", None)),
                memory_used=_int(getattr(mem, "used", None)),
                memory_free=_int(getattr(mem, "free", None)),
                utilization=_int(getattr(util, "gpu", None)),
                temperature=_int(temp)))
        return out

    def close(self) -> None:
        if self.handles is not None:
            _field(self.nv.nvmlShutdown)


def _field(fn: Any, *args: Any) -> Any:
    """One NVML call; unsupported, lost GPU or any other error reads as None."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


_lock = threading.Lock()
_nvml: _Nvml | None = None


def use_nvml(module: Any | None) -> None:
    """Test seam: poll ``module`` instead of pynvml from now on (None: the real one again)."""
    global _nvml
    with _lock:
        if _nvml is not None:
            _nvml.close()
        _nvml = _Nvml(module) if module is not None else None


def _session() -> _Nvml:
    global _nvml
    if _nvml is None:
        try:
            import pynvml
        except Exception as err:  # noqa: BLE001 - ImportError, or a broken install
            _nvml = _Nvml(None, f"NVML not available: nvidia-ml-py cannot be imported ({err})")
        else:
            _nvml = _Nvml(pynvml)
    return _nvml


# -- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------

def cuda_ordinals(visible: str | None, uuids: list[str | None]) -> tuple[list[int | None],
                                                                          list[str]]:
    """For each physical GPU, its cuda:N under ``visible`` (None = hidden), plus notes.

    Follows CUDA's rules: indexes or (prefixes of) UUIDs, in the listed order, up to
    the first entry that names no device.
    """
    count = len(uuids)
    if visible is None:
        return list(range(count)), []
    ordinals: list[int | None] = [None] * count
    notes: list[str] = []
    n = 0
    for token in (t.strip() for t in visible.split(",")):
        phys: int | None = None
        if token.lstrip("-").isdigit():
            k = int(token)
            phys = k if 0 <= k < count else None
        elif token.startswith("GPU-"):
            hits = [i for i, u in enumerate(uuids) if u and u.startswith(token)]
            phys = hits[0] if len(hits) == 1 else None
        elif token.startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES names MIG instance {token}; MIG instances "
                         "are not mapped to their GPU here")
        if phys is None or ordinals[phys] is not None:
            if token and not token.startswith(("MIG-", "-")):
                notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r} names no GPU here; "
                             "CUDA ignores it and every entry after it")
            break
        ordinals[phys] = n
        n += 1
    return ordinals, notes


# -- snapshot -------------------------------------------------------------------------

def _cpu() -> CpuInfo:
    total = avail = cores = physical = None
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, avail = int(vm.total), int(vm.available)
        cores, physical = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil missing: fall back to sysconf
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
        cores = os.cpu_count()
    limit = _cgroup_room()
    if limit is not None and avail is not None:
        avail = min(avail, limit)
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    return CpuInfo(cores, physical, usable, total, avail)


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit (containers, Slurm jobs), if any."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            raw = f.read().strip()
        if raw == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(raw) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


def _torch_gpus() -> list[GpuInfo]:
    """GPUs as torch sees them, when NVML is missing but torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    out = []
    try:
        if not torch.cuda.is_available():
            return []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            g = GpuInfo(None, i, name=p.name, memory_total=int(p.total_memory))
            if torch.cuda.is_initialized():  # mem_get_info would create a context
                free, total = torch.cuda.mem_get_info(i)
                g.memory_free, g.memory_used = int(free), int(total - free)
            out.append(g)
    except Exception:  # noqa: BLE001 - a broken CUDA setup means no GPU figures
        return out
    return out


def snapshot() -> DeviceSnapshot:
    """RAM and GPUs now. Never raises; the first call may take NVML's init time."""
    cpu = _cpu()
    with _lock:
        nv = _session()
        if nv.ready():
            gpus = nv.read()
            error, driver = None, nv.driver
        else:
            gpus, error, driver = [], nv.error, None
    if gpus:
        ordinals, notes = cuda_ordinals(os.environ.get("CUDA_VISIBLE_DEVICES"),
                                        [g.uuid for g in gpus])
        for g, o in zip(gpus, ordinals, strict=True):
            g.cuda_ordinal = o
        if (len({g.name for g in gpus}) > 1
                and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID"):
            notes.append("mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may "
                         "number them fastest-first, unlike NVML")
        return DeviceSnapshot(cpu, gpus, "nvml", None, driver, notes)
    if error is None:
        return DeviceSnapshot(cpu, [], "nvml", "NVML reports no GPUs", driver)
    tgpus = _torch_gpus()
    if tgpus:
        return DeviceSnapshot(cpu, tgpus, "torch", f"{error}; figures from torch.cuda")
    return DeviceSnapshot(cpu, [], None, error)


@dataclass(frozen=True, slots=True)
class TorchVersions:
    torch: str | None
    cuda: str | None  # the CUDA torch was built with (torch.version.cuda)
    cudnn: int | None
    cuda_available: bool
    device_count: int
    error: str | None = None


@functools.lru_cache(maxsize=1)
def torch_versions() -> TorchVersions:
    """torch, CUDA and cuDNN versions. Imports torch (seconds): call it from a worker."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - report, never raise
        return TorchVersions(None, None, None, False, 0, f"torch cannot be imported: {err}")
    try:
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return TorchVersions(torch.__version__, torch.version.cuda, cudnn, available, count)
    except Exception as err:  # noqa: BLE001
        return TorchVersions(torch.__version__, torch.version.cuda, None, False, 0,
                             f"CUDA check failed: {err}")


def fits(nbytes: int, snap: DeviceSnapshot, device: str = "auto") -> Fit:
    """Would ``nbytes`` fit on ``device`` (auto: cuda:0 when a GPU is visible, else cpu)?"""
    if device == "auto":
        device = "cuda:0" if snap.visible_gpus else "cpu"
    if device == "meta":
        return Fit(True, "meta", nbytes, None, None, "the meta device holds no data")
    if device == "cpu":
        avail, total = snap.cpu.ram_available, snap.cpu.ram_total
        where = "the CPU"
        label = "available RAM"
    elif device == "cuda" or device.startswith("cuda:"):
        ordinal = int(device.partition(":")[2] or 0)
        device = f"cuda:{ordinal}"
        g = snap.gpu(ordinal)
        if g is None:
            why = snap.reason or "no such GPU is visible"
            return Fit(False if snap.source else None, device, nbytes, None, None,
                       f"{device} is not available ({why})")
        avail, total = g.memory_free, g.memory_total
        where, label = f"{device} ({g.name or 'GPU'})", "free"
    else:
        return Fit(None, device, nbytes, None, None, f"unknown device {device!r}")
    if avail is None:
        return Fit(None, device, nbytes, None, total,
                   f"needs {format_bytes(nbytes)}; free memory on {where} is N/A")
    ok = nbytes <= avail
    return Fit(ok, device, nbytes, avail, total,
               f"needs {format_bytes(nbytes)}; {where} has {format_bytes(avail)} {label}"
               + (f" of {format_bytes(total)}" if total else ""))
