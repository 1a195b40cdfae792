"""``pttui devices``: CPU RAM, each GPU (NVML) and who uses it, torch / CUDA / cuDNN
versions, and with ``--for FILE`` where that checkpoint's weights would go."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

DTYPES = ("bfloat16", "float16", "float32", "float8_e4m3fn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/cli.md)")
    p.add_argument("--for", dest="file", metavar="FILE",
                   help="plan where this checkpoint's weights go (read from its header, "
                        "nothing loaded): GPUs in order, then CPU, then disk, as "
                        "accelerate's device_map=\"auto\" would")
    p.add_argument("--dtype", choices=DTYPES, metavar="DTYPE",
                   help=f"plan for the weights cast to DTYPE on load ({', '.join(DTYPES)}); "
                        "without it, the plan as stored and, for wider floats, as bfloat16")
    p.add_argument("--select", metavar="PATH.IN.CONTAINER",
                   help="plan this container instead of the checkpoint's main one")


def run(args: argparse.Namespace) -> int:
    """Exit 0; with --for, 1 when the weights need disk offload, 2 when unreadable."""
    from pttui.core.device import devices
    from pttui.core.device import plan as fp

    tensors = None
    if args.file is not None:
        from pttui.core.read import open_checkpoint

        select = None if args.select is None else tuple(p for p in args.select.split(".") if p)
        ckpt = open_checkpoint(args.file, select)
        tensors = list(ckpt.tensors.values())
    versions = devices.torch_versions()
    snap = devices.snapshot(torch_uuids=list(versions.uuids))
    stored = cast = None
    if tensors is not None:
        stored, cast = fp.both(tensors, snap, args.dtype)
        if args.dtype is not None:
            stored, cast = cast, None
    if args.json:
        doc = {**snap.to_json(), "torch": asdict(versions)}
        if stored is not None:
            doc["plan"] = {"file": args.file, **stored.to_json(),
                           "cast": None if cast is None else cast.to_json()}
        print(json.dumps(doc, indent=2))
    else:
        print(render(snap, versions))
        if stored is not None:
            from pttui.clicmds.inspect import printable

            head = f"plan    {printable(args.file)}: "
            body = fp.lines(stored, cast)
            print(head + body[0])
            print("\n".join(f"        {line}" for line in body[1:]))
    return 0 if stored is None or stored.fits else 1


def render(snap, versions) -> str:  # noqa: ANN001 - DeviceSnapshot, TorchVersions
    from pttui.core.device import format_bytes as fb

    def na(v: object, suffix: str = "") -> str:
        return "N/A" if v is None else f"{v}{suffix}"

    cpu = snap.cpu
    usable = (f" ({cpu.cores_usable} usable)" if cpu.cores_usable not in (None, cpu.cores)
              else "")
    swap = (f", swap {fb(cpu.swap_free)} free of {fb(cpu.swap_total)}"
            if cpu.swap_total else "")
    lines = [f"CPU     {na(cpu.cores)} cores{usable}, RAM {fb(cpu.ram_available)} available "
             f"of {fb(cpu.ram_total)}{swap}"]
    for g in snap.gpus:
        where = (f"cuda:{g.cuda_ordinal}" if g.cuda_ordinal is not None
                 else "MIG on: see its instances" if g.mig_enabled else "hidden")
        lines.append(f"{g.label:<7} {na(g.name)}  [{where}]  memory {fb(g.memory_used)} used, "
                     f"{fb(g.memory_free)} free of {fb(g.memory_total)}  util "
                     f"{na(g.utilization, '%')}  temp {na(g.temperature, ' C')}")
        if g.available is not None and g.available != g.memory_free and not g.mig_enabled:
            lines.append(f"        no room for another process ({g.compute_mode} mode)")
        for p in g.processes or []:
            who = p.user or "?"
            cmd = p.command or "(not visible from here)"
            lines.append(f"        pid {p.pid:<8} {who:<10} {fb(p.memory):>10}  {cmd[:60]}")
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
    from pttui.clicmds.inspect import printable

    return "\n".join(printable(line) for line in lines)
