"""Where a checkpoint fits on this machine: budgets from a device snapshot, accelerate's
placement (``placement.py``), and a verdict a user can act on.

A pure function of a :class:`~pttui.core.device.devices.DeviceSnapshot` and the
checkpoint's tensor metadata, so it is tested on made-up machines (eight GPUs, MIG, a
full GPU, no GPU) against accelerate itself. The budgets are what accelerate's
``get_max_memory`` would read once torch holds a CUDA context on each GPU: NVML's free
memory less :data:`CUDA_CONTEXT`, and RAM's MemAvailable; ``device_map="auto"`` then
balances them (``get_balanced_memory``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pttui.core.base import humanize
from pttui.core.base.nogc import gc_paused
from pttui.core.device import placement as pl

CUDA_CONTEXT = 512 * 2**20
"""What a CUDA context takes on a GPU before it holds a tensor (about 300-600 MiB with
lazy module loading, by GPU and driver): accelerate measures free memory after creating
one, NVML before."""

CASTS = {"bfloat16": 2, "float16": 2, "float32": 4, "float8_e4m3fn": 1}


@dataclass(slots=True)
class Plan:
    """Where the weights go. ``device_map`` and ``max_memory`` use accelerate's device
    names (ints are CUDA indexes), ready to paste."""

    bytes: int
    dtype: str | None  # the dtype weights are cast to (None: as stored)
    device_map: dict[str, pl.Device]
    max_memory: dict[pl.Device, int]
    per_device: dict[pl.Device, int]  # bytes placed on each device
    verdict: str
    kind: str  # gpu | gpus | offload | cpu | disk | empty
    map_location: str
    spare: int | None  # room left on the only device used, when one is
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Nothing goes to disk (the plan needs no offload folder)."""
        return "disk" not in self.per_device

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "dtype": self.dtype, "verdict": self.verdict,
                "kind": self.kind, "fits": self.fits,
                "device_map": dict(self.device_map),
                "max_memory": {str(k): v for k, v in self.max_memory.items()},
                "per_device": {str(k): v for k, v in self.per_device.items()},
                "map_location": self.map_location, "spare": self.spare,
                "notes": list(self.notes)}


@gc_paused  # a module per prefix: 125,000 objects for a 100,000-key file
def layout(tensors: Iterable[Any], dtype: str | None = None) -> pl.Layout:
    """The module tree of TensorMetas; tensors sharing storage, offset, shape and stride
    are one (tied weights count once)."""
    cast = None if dtype is None else CASTS[dtype]

    def rows():
        for t in tensors:
            s = t.storage
            tie = None if s is None else (s.ident, t.storage_offset, tuple(t.shape),
                                          None if t.stride is None else tuple(t.stride))
            yield t.key, t.numel, t.dtype, tie

    return pl.Layout(rows(), cast)


def budgets(snap: Any) -> tuple[dict[pl.Device, int], list[str]]:
    """``get_max_memory()`` from a snapshot: each visible GPU (CUDA order) with its free
    memory less a CUDA context, then the CPU's available RAM; plus notes on what was
    left out."""
    out: dict[pl.Device, int] = {}
    notes: list[str] = []
    for g in snap.visible_gpus:
        label = f"cuda:{g.cuda_ordinal}"
        room = getattr(g, "available", g.memory_free)
        if room is None:
            notes.append(f"{label}: free memory is N/A; not planned on")
            continue
        out[g.cuda_ordinal] = max(0, room - CUDA_CONTEXT)
    if snap.cpu.ram_available is not None:
        out["cpu"] = snap.cpu.ram_available
    else:
        notes.append("available RAM is N/A; the CPU is left out of the plan")
    return out, notes


@gc_paused
def plan(tensors: Sequence[Any] | pl.Layout, snap: Any, dtype: str | None = None,
         max_memory: dict[pl.Device, int] | None = None) -> Plan:
    """The ``device_map="auto"`` plan for ``tensors`` (TensorMetas, or their
    :func:`layout`) on the machine ``snap`` describes. ``max_memory`` replaces the
    snapshot's budgets (as a user's own would: no 10% kept back on a lone GPU)."""
    if isinstance(tensors, pl.Layout):
        lay = tensors.recast(None if dtype is None else CASTS[dtype])
    else:
        lay = layout(tensors, dtype)
    user_set = max_memory is not None
    raw, notes = (dict(max_memory), []) if user_set else budgets(snap)
    blocks = lay.blocks()
    no_split = blocks.__contains__
    memory = pl.balanced_memory(lay, raw, user_set, no_split)
    dmap = pl.infer_device_map(lay, memory, no_split) if lay.sizes else {}
    total = int(lay.size(""))
    per: dict[pl.Device, int] = {}
    for name, d in dmap.items():  # disjoint prefixes once cleaned
        per[d] = per.get(d, 0) + int(lay.size(name))
    if sum(per.values()) < total:
        _cover(lay, dmap, per)
    per = {d: b for d, b in per.items() if b > 0}
    kind, verdict, spare = _verdict(per, raw, total)
    if _tied_apart(lay, dmap):
        notes.append("tied weights end up on different devices; accelerate would warn")
    return Plan(total, dtype, dmap, {k: int(v) for k, v in memory.items()}, per, verdict,
                kind, _map_location(per), spare, notes)


def _cover(lay: pl.Layout, dmap: dict[str, pl.Device], per: dict[pl.Device, int]) -> None:
    """accelerate leaves the buffers of a module it split out of its map; pttui's map
    names them, on the device of the module's first part, so pasting it covers every
    tensor. (Rare: only when the map leaves bytes out.)"""
    for name in list(lay.sizes):
        if name in dmap or not lay.is_tensor(name) or pl.device_of(name, dmap) is not None:
            continue
        parent = name.rpartition(".")[0]
        device = next((d for k, d in dmap.items() if k.startswith(f"{parent}.")),
                      next(iter(dmap.values()), None))
        if device is not None:
            dmap[name] = device
            per[device] = per.get(device, 0) + int(lay.size(name))


def _tied_apart(lay: pl.Layout, dmap: dict[str, pl.Device]) -> bool:
    return any(len({pl.device_of(n, dmap) for n in group}) > 1 for group in lay.tied)


def device_name(d: pl.Device) -> str:
    return f"cuda:{d}" if isinstance(d, int) else str(d)


def _verdict(per: dict[pl.Device, int], raw: dict[pl.Device, int],
             total: int) -> tuple[str, str, int | None]:
    fb = humanize.nbytes
    if total == 0:
        return "empty", "nothing to place: the checkpoint holds no tensor data", None
    gpus = [d for d in per if isinstance(d, int)]
    cpu, disk = per.get("cpu", 0), per.get("disk", 0)
    parts = ", ".join(f"cuda:{d} {fb(per[d])}" for d in gpus)
    if gpus and not cpu and not disk:
        if len(gpus) == 1:
            spare = raw[gpus[0]] - per[gpus[0]]
            return "gpu", f"fits on cuda:{gpus[0]} with {fb(spare)} to spare", spare
        return "gpus", f"needs {len(gpus)} GPUs: {parts}", None
    if not gpus and not disk:
        spare = raw.get("cpu", 0) - cpu
        if any(isinstance(d, int) for d in raw):
            return "offload", (f"does not fit on any GPU: all {fb(cpu)} on the CPU "
                               f"({fb(spare)} of RAM to spare)"), None
        return "cpu", f"fits in RAM with {fb(spare)} to spare (no GPU)", spare
    offload = []
    if cpu:
        offload.append(f"{fb(cpu)} to CPU")
    if disk:
        offload.append(f"{fb(disk)} to disk")
    head = f"{parts}; " if gpus else ""
    return ("disk" if disk else "offload"), f"{head}offload {' and '.join(offload)}", None


def _map_location(per: dict[pl.Device, int]) -> str:
    """What ``torch.load`` needs: the one GPU when everything fits there; otherwise the
    CPU (with mmap, so nothing is read twice) before dispatching along the device map."""
    if len(per) == 1:
        only = next(iter(per))
        if isinstance(only, int):
            return f'map_location="cuda:{only}"'
    return 'map_location="cpu", mmap=True'


def snippet(p: Plan) -> str:
    """Python to paste: the budgets and the map, for accelerate or transformers."""
    mm = "{" + ", ".join(f"{k!r}: {_gib(v)!r}" for k, v in p.max_memory.items()) + "}"
    lines = [f"max_memory = {mm}"]
    if len(p.device_map) <= 12:
        dm = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in p.device_map.items()) + "}"
        lines.append(f"device_map = {dm}")
    else:
        lines.append(f"device_map = ...  # {len(p.device_map)} entries: pttui devices --for "
                     "FILE --json")
    lines.append("# transformers: from_pretrained(..., device_map=device_map)  or "
                 "device_map=\"auto\", max_memory=max_memory")
    lines.append(f"# torch.load(path, {p.map_location})")
    return "\n".join(lines)


@gc_paused
def both(tensors: Sequence[Any], snap: Any, dtype: str | None = None) -> tuple[Plan, Plan | None]:
    """The plan as stored, and (when it changes anything) the plan cast to ``dtype``
    (default bfloat16, when the file holds wider floats)."""
    lay = layout(tensors)
    stored = plan(lay, snap)
    want = dtype or "bfloat16"
    if dtype is None and not any(_wider(t.dtype, CASTS[want]) for t in tensors):
        return stored, None
    cast = plan(lay, snap, want)
    return stored, (None if cast.bytes == stored.bytes and dtype is None else cast)


def _wider(dtype: str, size: int) -> bool:
    from pttui.core.base.dtypes import itemsize_bits

    return (dtype.startswith(("float", "complex", "bfloat"))
            and itemsize_bits(dtype) > 8 * size)


def lines(p: Plan, cast: Plan | None = None) -> list[str]:
    """The verdict as people read it, the same in the CLI, the shell and the TUI."""
    fb = humanize.nbytes
    what = p.dtype or "as stored"
    out = [f"{fb(p.bytes)} ({what}): {p.verdict}"]
    if cast is not None:
        out.append(f"as {cast.dtype} {fb(cast.bytes)}: {cast.verdict}")
    out.append(f"torch.load(path, {p.map_location})")
    if p.kind in ("gpus", "offload", "disk"):
        out.extend(snippet(p).splitlines()[:2])
    out.extend(p.notes)
    return out


def _gib(n: int) -> str:
    """accelerate reads "12GiB" style sizes; whole MiB keep it exact enough."""
    return f"{n // 2**20}MiB"
