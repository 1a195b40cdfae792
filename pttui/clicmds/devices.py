"""``pttui devices``: CPU RAM, each GPU (NVML), and the torch / CUDA / cuDNN versions."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from pttui.core.device import devices

    snap = devices.snapshot()
    versions = devices.torch_versions()
    if args.json:
        print(json.dumps({**snap.to_json(), "torch": asdict(versions)}, indent=2))
    else:
        print(render(snap, versions))
    return 0


def render(snap, versions) -> str:  # noqa: ANN001 - DeviceSnapshot, TorchVersions
    from pttui.core.device import format_bytes as fb

    def na(v: object, suffix: str = "") -> str:
        return "N/A" if v is None else f"{v}{suffix}"

    cpu = snap.cpu
    usable = (f" ({cpu.cores_usable} usable)" if cpu.cores_usable not in (None, cpu.cores)
              else "")
    lines = [f"CPU     {na(cpu.cores)} cores{usable}, RAM {fb(cpu.ram_available)} available "
             f"of {fb(cpu.ram_total)}"]
    for g in snap.gpus:
        label = f"GPU {g.index}" if g.index is not None else "GPU"
        where = f"cuda:{g.cuda_ordinal}" if g.cuda_ordinal is not None else "hidden"
        lines.append(f"{label:<7} {na(g.name)}  [{where}]  memory {fb(g.memory_used)} used, "
                     f"{fb(g.memory_free)} free of {fb(g.memory_total)}  util "
                     f"{na(g.utilization, '%')}  temp {na(g.temperature, ' C')}")
    if not snap.gpus:
        lines.append(f"GPUs    none ({snap.reason or 'no GPU found'})")
    elif snap.reason:
        lines.append(f"note    {snap.reason}")
    if snap.driver:
        lines.append(f"driver  {snap.driver}")
    if versions.torch is None:
        lines.append(f"torch   not available ({versions.error})")
    else:
        built = f"CUDA {versions.cuda}" if versions.cuda else "CPU-only build"
        cudnn = f", cuDNN {versions.cudnn}" if versions.cudnn else ""
        avail = (f"yes, {versions.device_count} device(s)" if versions.cuda_available else "no")
        lines.append(f"torch   {versions.torch} ({built}{cudnn}); CUDA available: {avail}")
        if versions.error:
            lines.append(f"note    {versions.error}")
    lines.extend(f"note    {n}" for n in snap.notes)
    return "\n".join(lines)
