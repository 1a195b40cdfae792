"""The devices pane: RAM, each GPU and who uses it, torch/CUDA versions, where ``l``
loads, and where the open file's weights would go (the same plan as ``pttui devices
--for``, computed in the poll worker)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.widgets import Static
from textual.worker import Worker

from pttui.core.device import devices
from pttui.core.device import format_bytes as fb
from pttui.tui import errors
from pttui.tui.messages import DevicesPolled, VersionsRead

POLL_S = 2.0
PLAN_EVERY_S = 10.0  # free memory drifts; the plan follows it, not every poll


class DevicesPane(Static):
    """Redrawn from plain data; it polls the devices itself, in a worker, once started
    (the screen starts it after the first paint: NVML and torch take the GIL a while)."""

    ALLOW_MAXIMIZE = True  # `z` maximises the pane, not the widget inside it

    def __init__(self, **kwargs) -> None:
        super().__init__(Text("devices: reading…", style="dim"), **kwargs)
        self.snap: Any = None
        self.versions: Any = None
        self.map_location = "auto"
        self.nbytes: int | None = None
        self.tensors: list | None = None  # the open file's TensorMetas
        self.plans: Any = None  # (tensors, stored, cast) for those tensors
        self._planned_at = 0.0
        self._polling = False

    def start(self) -> None:
        """Poll every POLL_S seconds; read torch's versions once."""
        self.poll()
        self.set_interval(POLL_S, self.poll)
        self.read_versions()

    def poll(self) -> None:
        """A timer tick: skipped while the last poll still runs."""
        if not self._polling:
            self._polling = True
            self._poll()

    @work(thread=True, group="devices", exit_on_error=False)
    def _poll(self) -> None:
        try:
            snap = self.app.device_source()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - devices never take the app down
            snap = None
        plans, tensors = None, self.tensors
        stale = self.plans is None or self.plans[0] is not tensors
        if (snap is not None and tensors is not None
                and (stale or time.monotonic() - self._planned_at > PLAN_EVERY_S)):
            from pttui.core.device import plan as fp

            self._planned_at = time.monotonic()
            plans = (tensors, *fp.both(tensors, snap))
        self.post_message(DevicesPolled(snap, plans))

    def on_devices_polled(self, message: DevicesPolled) -> None:
        self._polling = False
        if message.plans is not None and message.plans[0] is self.tensors:
            self.plans = message.plans
        if message.snapshot is not None:
            self.show(message.snapshot)

    def targets(self) -> list[str]:
        """Where ``l`` can load: auto, the CPU, each GPU torch can see, meta."""
        gpus = [f"cuda:{g.cuda_ordinal}" for g in (self.snap.visible_gpus if self.snap else [])]
        return ["auto", "cpu", *gpus, "meta"]

    @work(thread=True, group="versions", exit_on_error=False)
    def read_versions(self) -> None:
        """torch's versions (importing torch takes seconds), then torchvision's model
        names for the picker and the palette."""
        self.post_message(VersionsRead(self.app.versions_source()))  # type: ignore[attr-defined]
        if getattr(self.app, "torchvision_names", None) is None:
            from pttui.core.target import torchvision_models

            self.app.torchvision_names = torchvision_models()  # type: ignore[attr-defined]

    def on_versions_read(self, message: VersionsRead) -> None:
        self.show(versions=message.versions)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if errors.report(self, event) is not None and event.worker.group == "devices":
            self._polling = False

    def show(self, snap: Any = None, versions: Any = None, map_location: str | None = None,
             nbytes: int | None = -1, tensors: Any = -1) -> None:
        if snap is not None:
            self.snap = snap
        if versions is not None:
            self.versions = versions
        if map_location is not None:
            self.map_location = map_location
        if nbytes != -1:
            self.nbytes = nbytes
        if tensors != -1:
            self.tensors = tensors
            if tensors is None or self.plans is None or self.plans[0] is not tensors:
                self.plans = None
                if tensors is not None and self.snap is not None:
                    self.poll()  # plan the new file now, not at the next tick
        self.update(self._text())

    def _plan(self, t: Text) -> None:
        """The open file's plan, first after the GPUs (the pane is short: what decides
        where the weights go comes before the versions). The cast plan shows its
        verdict only when it changes the answer."""
        if self.plans is not None:
            _, stored, cast = self.plans
            ok = "green" if stored.fits and stored.kind in ("gpu", "cpu") else \
                "yellow" if stored.fits else "red"
            t.append("\nplan ", style="bold")
            t.append(Text(stored.verdict, style=ok))
            if cast is not None:
                said = f": {cast.verdict}" if cast.kind != stored.kind else ""
                t.append(Text(f"\n  as {cast.dtype} {fb(cast.bytes)}{said}", style="dim"))
        elif self.tensors is not None:
            t.append("\nplan: working…", style="dim")

    def _text(self) -> Text:
        t = Text()
        s = self.snap
        if s is None:
            t.append("devices: reading…", style="dim")
        else:
            t.append("RAM ", style="bold")
            t.append(f"{fb(s.cpu.ram_available)} free of {fb(s.cpu.ram_total)}")
            for g in s.gpus:
                t.append("\n")
                label = f"cuda:{g.cuda_ordinal}" if g.cuda_ordinal is not None else \
                    f"gpu{g.index} (hidden)"
                t.append(f"{label} ", style="bold")
                t.append(Text(g.name or "GPU"))
                used = f"{fb(g.memory_used)}/{fb(g.memory_total)}"
                util = "N/A" if g.utilization is None else f"{g.utilization}%"
                temp = "N/A" if g.temperature is None else f"{g.temperature}°C"
                t.append(f"\n  {used} · util {util} · {temp}", style="dim")
                if g.processes:
                    mine = sum(p.memory or 0 for p in g.processes)
                    t.append(f"\n  {len(g.processes)} proc · {fb(mine)}", style="dim")
                if g.available == 0 and g.memory_free:
                    t.append(f"\n  no room: {g.compute_mode or 'MIG'}", style="yellow")
            if not s.gpus:
                t.append("\nno GPU", style="dim")
                if s.reason:
                    t.append(Text(f" ({s.reason})", style="dim"))
        self._plan(t)
        t.append(f"\nmap_location: {self.map_location}")
        if self.nbytes is not None and s is not None:
            where = self.map_location if self.map_location not in ("keep", "auto") else "auto"
            fit = devices.fits(self.nbytes, s, where)
            style = "green" if fit.fits else "red" if fit.fits is False else "yellow"
            word = "fits" if fit.fits else "does not fit" if fit.fits is False else "fit N/A"
            # short enough for the 26 columns of the pane: size, verdict, device; the
            # free memory below it (the full reason only when there is no figure)
            t.append(f"\nl: {fb(self.nbytes)} {word} {fit.device}", style=style)
            if fit.available is not None:
                t.append(f"\n  {fb(fit.available)} free there", style="dim")
            else:
                t.append(Text(f"\n  {fit.reason}", style="dim"))
        v = self.versions
        t.append("\n")
        if v is None:
            t.append("torch: loading…", style="dim")
        elif v.torch is None:
            t.append(Text(v.error or "torch unavailable", style="red"))
        else:
            t.append(f"torch {v.torch}" + (f" · CUDA {v.cuda}" if v.cuda else " · CPU build"),
                     style="dim")
        return t
