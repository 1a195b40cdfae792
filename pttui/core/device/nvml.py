"""One NVML session: GPUs, their MIG instances and who uses them, read field by field.

NVML (``nvidia-ml-py``) is initialised once and its handles kept; each field is read on
its own so one an old driver does not support is ``None`` (shown N/A) instead of hiding
the GPU. Process lists cost more than memory figures, so they are read at most every
:data:`PROCESSES_EVERY_S` seconds, however often the pane polls.

Test seam: :func:`use_nvml` swaps in a fake NVML module (anything with the ``nvml*``
functions used below) and resets the cached state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

PROCESSES_EVERY_S = 5.0
_EXCLUSIVE_PROCESS, _PROHIBITED = 3, 2  # NVML_COMPUTEMODE_*
_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


@dataclass(slots=True)
class GpuProcess:
    pid: int
    user: str | None  # None: not visible from here (another container's pid namespace)
    command: str | None
    memory: int | None  # bytes; None when the driver does not say (MIG, some vGPUs)


@dataclass(slots=True)
class GpuInfo:
    index: int | None  # NVML's (PCI bus order) index; None when only torch knows the GPU
    cuda_ordinal: int | None  # torch's cuda:N under CUDA_VISIBLE_DEVICES; None = hidden
    name: str | None = None
    uuid: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    utilization: int | None = None  # percent
    temperature: int | None = None  # degrees Celsius
    processes: list[GpuProcess] | None = None  # None: the driver gave no list
    compute_mode: str | None = None  # default | exclusive_process | prohibited | ...
    mig_parent: int | None = None  # a MIG instance: the NVML index of its GPU
    mig_enabled: bool = False  # a GPU split into MIG instances (CUDA uses those)
    speed: tuple = ()  # what CUDA's fastest-first order compares (capability, SMs, clock)

    @property
    def available(self) -> int | None:
        """What a new process of this user can allocate: the free memory, or none when
        the GPU takes no CUDA context (prohibited) or one process only and has it."""
        if self.compute_mode == "prohibited" or self.mig_enabled:
            return 0
        if self.compute_mode == "exclusive_process" and self.processes:
            return 0
        return self.memory_free

    @property
    def label(self) -> str:
        if self.mig_parent is not None:
            return f"MIG on GPU {self.mig_parent}"
        return f"GPU {self.index}" if self.index is not None else "GPU"


class Session:
    """NVML initialised once, its handles kept; :meth:`read` per poll."""

    def __init__(self, module: Any | None, error: str | None = None) -> None:
        self.nv = module
        self.error = error
        self.handles: list[Any] | None = None
        self.driver: str | None = None
        self._procs: dict[int, tuple[float, list[GpuProcess] | None]] = {}

    def ready(self) -> bool:
        if self.handles is None and self.error is None:
            try:
                self.nv.nvmlInit()
                count = self.nv.nvmlDeviceGetCount()
                self.handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                self.driver = _text(_call(self.nv, "nvmlSystemGetDriverVersion"))
            except Exception as err:  # noqa: BLE001 - any NVML failure means "no NVML"
                self.error = f"NVML not available: {err or type(err).__name__}"
        return self.handles is not None

    def read(self) -> list[GpuInfo]:
        """Every GPU in NVML order, each followed by its MIG instances."""
        out: list[GpuInfo] = []
        now = time.monotonic()
        for i, h in enumerate(self.handles or []):
            gpu = self._one(h, i, now, key=i)
            gpu.index = i
            mode = _call(self.nv, "nvmlDeviceGetMigMode", h)
            gpu.mig_enabled = bool(mode) and _int(_first(mode)) == 1
            out.append(gpu)
            if gpu.mig_enabled:
                out.extend(self._migs(h, i, now))
        return out

    def _migs(self, h: Any, parent: int, now: float) -> list[GpuInfo]:
        nv, out = self.nv, []
        for k in range(_int(_call(nv, "nvmlDeviceGetMaxMigDeviceCount", h)) or 0):
            mh = _call(nv, "nvmlDeviceGetMigDeviceHandleByIndex", h, k)
            if mh is None:  # an empty slot
                continue
            mig = self._one(mh, None, now, key=(parent + 1) * 1000 + k)
            mig.mig_parent = parent
            out.append(mig)
        return out

    def _one(self, h: Any, index: int | None, now: float, key: int) -> GpuInfo:
        nv = self.nv
        mem = _call(nv, "nvmlDeviceGetMemoryInfo", h)
        util = _call(nv, "nvmlDeviceGetUtilizationRates", h)
        temp = _call(nv, "nvmlDeviceGetTemperature", h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        total = _int(getattr(mem, "total", None))
        cap = _call(nv, "nvmlDeviceGetCudaComputeCapability", h)
        cores = _call(nv, "nvmlDeviceGetNumGpuCores", h)
        clock = _call(nv, "nvmlDeviceGetMaxClockInfo", h,
                       getattr(nv, "NVML_CLOCK_SM", 1))
        return GpuInfo(
            index=index, cuda_ordinal=None,
            name=_text(_call(nv, "nvmlDeviceGetName", h)),
            uuid=_text(_call(nv, "nvmlDeviceGetUUID", h)),
            memory_total=total,
            memory_used=_int(getattr(mem, "used", None)),
            memory_free=_int(getattr(mem, "free", None)),
            utilization=_int(getattr(util, "gpu", None)),
            temperature=_int(temp),
            processes=self._processes(h, key, now, total),
            compute_mode=_MODES.get(_int(_call(nv, "nvmlDeviceGetComputeMode", h))),  # type: ignore[arg-type]
            speed=(tuple(cap) if isinstance(cap, (tuple, list)) else (), _int(cores) or 0,
                   _int(clock) or 0))

    def _processes(self, h: Any, key: int, now: float,
                   total: int | None) -> list[GpuProcess] | None:
        seen = self._procs.get(key)
        if seen is not None and now - seen[0] < PROCESSES_EVERY_S:
            return seen[1]
        listed: dict[int, int | None] = {}
        got_any = False
        for name in ("nvmlDeviceGetComputeRunningProcesses",
                     "nvmlDeviceGetGraphicsRunningProcesses"):
            procs = _call(self.nv, name, h)
            if procs is None:
                continue
            got_any = True
            for p in procs:
                pid = _int(getattr(p, "pid", None))
                if pid is None:
                    continue
                used = _int(getattr(p, "usedGpuMemory", None))
                if used is not None and total is not None and used > total:
                    used = None  # NVML_VALUE_NOT_AVAILABLE
                listed[pid] = used if listed.get(pid) is None else listed[pid]
        out = [GpuProcess(pid, *_owner(pid), used) for pid, used in listed.items()] \
            if got_any else None
        self._procs[key] = (now, out)
        return out

    def close(self) -> None:
        if self.handles is not None:
            _call(self.nv, "nvmlShutdown")


def _owner(pid: int) -> tuple[str | None, str | None]:
    """The user and command line of ``pid``; (None, None) when this box cannot see it."""
    try:
        import psutil

        p = psutil.Process(pid)
        with p.oneshot():
            user = p.username()
            cmd = " ".join(p.cmdline()) or p.name()
        return user, cmd[:200]
    except Exception:  # noqa: BLE001 - gone, another pid namespace, access denied
        return None, None


def _call(nv: Any, name: str, *args: Any) -> Any:
    """One NVML call; missing in this nvidia-ml-py, unsupported by the driver, a lost
    GPU or any other error reads as None."""
    fn = getattr(nv, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, (tuple, list)) and v else v


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


lock = threading.Lock()
_session: Session | None = None


def use_nvml(module: Any | None) -> None:
    """Test seam: poll ``module`` instead of pynvml from now on (None: the real one again)."""
    global _session
    with lock:
        if _session is not None:
            _session.close()
        _session = Session(module) if module is not None else None


def session() -> Session:
    """The process's NVML session (call with :data:`lock` held)."""
    global _session
    if _session is None:
        try:
            import pynvml
        except Exception as err:  # noqa: BLE001 - ImportError, or a broken install
            _session = Session(None, f"NVML not available: nvidia-ml-py cannot be imported "
                                     f"({err})")
        else:
            _session = Session(pynvml)
    return _session

