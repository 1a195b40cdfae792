"""What this machine can hold: CPU RAM and every GPU, cheap enough to poll every 2 s.

GPU figures come from NVML (``nvml.py``). NVML numbers GPUs in PCI bus order; CUDA
numbers them fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, then keeps the
ones ``CUDA_VISIBLE_DEVICES`` names, in its order. Each GPU carries both numbers, and
the snapshot says whether the CUDA one is exact (same models, PCI order asked for, or
torch's own list) or pttui's estimate. Without NVML, ``torch.cuda`` is the fallback,
but only when torch is already imported: nothing here imports torch just to poll.
Nothing here raises: a box with no GPU gets an empty list and a reason.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pttui.core.base import humanize
from pttui.core.device import nvml
from pttui.core.device.nvml import GpuInfo, GpuProcess, use_nvml

__all__ = ["CpuInfo", "DeviceSnapshot", "Fit", "GpuInfo", "GpuProcess", "cuda_ordinals",
           "fits", "format_bytes", "snapshot", "torch_versions", "use_nvml"]


@dataclass(slots=True)
class CpuInfo:
    cores: int | None
    cores_physical: int | None
    cores_usable: int | None  # what this process may run on (affinity)
    ram_total: int | None
    ram_available: int | None  # MemAvailable, capped by a cgroup memory limit if any
    swap_total: int | None = None
    swap_free: int | None = None


@dataclass(slots=True)
class DeviceSnapshot:
    cpu: CpuInfo
    gpus: list[GpuInfo]
    source: str | None  # "nvml" | "torch" | None
    reason: str | None  # why GPU figures are missing or partial
    driver: str | None = None
    notes: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)
    order_exact: bool = True  # False: the cuda:N numbers are pttui's estimate

    @property
    def visible_gpus(self) -> list[GpuInfo]:
        """GPUs torch can use, in cuda:N order."""
        return sorted((g for g in self.gpus if g.cuda_ordinal is not None),
                      key=lambda g: g.cuda_ordinal)  # type: ignore[arg-type, return-value]

    def gpu(self, ordinal: int) -> GpuInfo | None:
        return next((g for g in self.gpus if g.cuda_ordinal == ordinal), None)

    def to_json(self) -> dict[str, Any]:
        """The ``pttui devices --json`` contract (docs/cli.md)."""
        c = self.cpu
        return {"ram": {"total": c.ram_total, "available": c.ram_available,
                        "swap_total": c.swap_total, "swap_free": c.swap_free},
                "cpu": {"cores": c.cores, "cores_physical": c.cores_physical,
                        "cores_usable": c.cores_usable},
                "gpus": [_gpu_json(g) for g in self.gpus],
                "cuda_order": "exact" if self.order_exact else "estimated",
                "source": self.source, "reason": self.reason, "driver": self.driver,
                "notes": list(self.notes), "taken_at": self.taken_at}


def _gpu_json(g: GpuInfo) -> dict[str, Any]:
    return {"cuda_index": g.cuda_ordinal, "nvml_index": g.index, "uuid": g.uuid,
            "name": g.name, "mig_parent": g.mig_parent, "mig_enabled": g.mig_enabled,
            "memory": {"total": g.memory_total, "used": g.memory_used,
                       "free": g.memory_free, "available": g.available},
            "utilization": g.utilization, "temperature": g.temperature,
            "compute_mode": g.compute_mode,
            "processes": None if g.processes is None else [asdict(p) for p in g.processes]}


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


# -- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------

def cuda_ordinals(visible: str | None, uuids: list[str | None],
                  migs: list[str | None] = ()) -> tuple[list[int | None], list[str],
                                                       int | None]:
    """cuda:N of each device CUDA enumerates (``uuids``, in CUDA's order) under
    ``visible``, None = hidden; notes; and which of ``migs`` (MIG instance UUIDs) gets
    a number (a CUDA process uses one MIG instance at most).

    Follows CUDA's rules: indexes (into CUDA's order) or (prefixes of) UUIDs, in the
    listed order, up to the first entry that names no device.
    """
    count = len(uuids)
    if visible is None:
        return list(range(count)), [], None
    ordinals: list[int | None] = [None] * count
    notes: list[str] = []
    mig: int | None = None
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
            hits = [i for i, u in enumerate(migs) if u and u.startswith(token)]
            if len(hits) == 1 and mig is None:
                mig = hits[0]
                n += 1
                continue
            notes.append(f"CUDA_VISIBLE_DEVICES names MIG instance {token}: " + (
                "a CUDA process uses only the first MIG instance it is given"
                if hits else "no such instance here"))
            continue
        if phys is None or ordinals[phys] is not None:
            if token and not token.startswith("-"):
                notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r} names no GPU here; "
                             "CUDA ignores it and every entry after it")
            break
        ordinals[phys] = n
        n += 1
    return ordinals, notes, mig


def cuda_order(gpus: list[GpuInfo], device_order: str | None,
               torch_uuids: list[str] | None = None) -> tuple[list[GpuInfo], bool, list[str]]:
    """The whole GPUs CUDA enumerates, in its order before CUDA_VISIBLE_DEVICES; whether
    that order is exact; notes. CUDA's default order is fastest first (its heuristic is
    not published: pttui sorts by compute capability, then SMs, then clock, ties in PCI
    order), so with mixed models the numbers are exact only with
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or torch's own list of UUIDs."""
    whole = [g for g in gpus if g.mig_parent is None and not g.mig_enabled]
    if device_order == "PCI_BUS_ID" or len({(g.name, g.speed) for g in whole}) <= 1:
        return whole, True, []
    if torch_uuids:
        by_uuid = {g.uuid: g for g in whole}
        listed = [by_uuid[u] for u in torch_uuids if u in by_uuid]
        if len(listed) == len(whole):
            return listed, True, []
    ranked = sorted(whole, key=lambda g: tuple(-x for x in (*g.speed[0], *g.speed[1:])))
    return ranked, False, ["mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: "
                           "cuda:N is pttui's estimate of CUDA's fastest-first order; set "
                           "CUDA_DEVICE_ORDER=PCI_BUS_ID to make it exact"]


def _number(gpus: list[GpuInfo], torch_uuids: list[str] | None = None) -> tuple[bool,
                                                                                 list[str]]:
    """Give every GPU and MIG instance its cuda:N (None: hidden) as this process sees."""
    order, exact, notes = cuda_order(gpus, os.environ.get("CUDA_DEVICE_ORDER"), torch_uuids)
    migs = [g for g in gpus if g.mig_parent is not None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ordinals, more, mig = cuda_ordinals(visible, [g.uuid for g in order],
                                        [g.uuid for g in migs])
    for g, o in zip(order, ordinals, strict=True):
        g.cuda_ordinal = o
    if migs:
        if visible is None:
            mig, n = 0, len(order)
            more.append("MIG instances: a CUDA process uses one; without "
                        "CUDA_VISIBLE_DEVICES=MIG-<uuid> it is the first (estimated)")
            exact = False
        else:
            n = sum(o is not None for o in ordinals)
        if mig is not None:
            migs[mig].cuda_ordinal = n
    return exact, notes + more


# -- snapshot -------------------------------------------------------------------------

def _cpu() -> CpuInfo:
    total = avail = cores = physical = swap_total = swap_free = None
    try:
        import psutil

        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        total, avail = int(vm.total), int(vm.available)
        swap_total, swap_free = int(sw.total), int(sw.free)
        cores, physical = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil missing or broken: the kernel's own figures
        info = meminfo()
        total, avail = info.get("MemTotal"), info.get("MemAvailable")
        swap_total, swap_free = info.get("SwapTotal"), info.get("SwapFree")
        cores = os.cpu_count()
    limit = _cgroup_room()
    if limit is not None and avail is not None:
        avail = min(avail, limit)
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    return CpuInfo(cores, physical, usable, total, avail, swap_total, swap_free)


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` in bytes. MemAvailable is what can be allocated without
    swapping; MemFree leaves out the page cache the kernel gives back (often most of
    a box's RAM), so it is never used for "free"."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out


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


def snapshot(torch_uuids: list[str] | None = None) -> DeviceSnapshot:
    """RAM and GPUs now. Never raises; the first call may take NVML's init time.
    ``torch_uuids``: torch's GPUs in cuda:N order (:func:`torch_versions`), which makes
    the numbering exact on a box with mixed GPU models."""
    cpu = _cpu()
    with nvml.lock:
        nv = nvml.session()
        if nv.ready():
            gpus = nv.read()
            error, driver = None, nv.driver
        else:
            gpus, error, driver = [], nv.error, None
    if gpus:
        exact, notes = _number(gpus, torch_uuids)
        return DeviceSnapshot(cpu, gpus, "nvml", None, driver, notes, order_exact=exact)
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
    uuids: tuple[str, ...] = ()  # torch's GPUs in cuda:N order, as NVML spells them


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
        return TorchVersions(torch.__version__, torch.version.cuda, cudnn, available, count,
                             uuids=_uuids(torch, count))
    except Exception as err:  # noqa: BLE001
        return TorchVersions(torch.__version__, torch.version.cuda, None, False, 0,
                             f"CUDA check failed: {err}")


def _uuids(torch: Any, count: int) -> tuple[str, ...]:
    """torch's GPU UUIDs in cuda:N order (properties only: no CUDA context is made)."""
    out = []
    for i in range(count):
        u = str(getattr(torch.cuda.get_device_properties(i), "uuid", "") or "")
        if not u:
            return ()
        out.append(u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}")
    return tuple(out)


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
        avail, total = g.available, g.memory_total
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
