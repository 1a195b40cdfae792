"""The devices pane: RAM, each GPU, torch/CUDA versions, map_location, does the file fit."""

from __future__ import annotations

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
        self.post_message(DevicesPolled(snap))

    def on_devices_polled(self, message: DevicesPolled) -> None:
        self._polling = False
        if message.snapshot is not None:
            self.show(message.snapshot)

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
             nbytes: int | None = -1) -> None:
        if snap is not None:
            self.snap = snap
        if versions is not None:
            self.versions = versions
        if map_location is not None:
            self.map_location = map_location
        if nbytes != -1:
            self.nbytes = nbytes
        self.update(self._text())

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
            if not s.gpus:
                t.append("\nno GPU", style="dim")
                if s.reason:
                    t.append(Text(f" ({s.reason})", style="dim"))
        v = self.versions
        t.append("\n")
        if v is None:
            t.append("torch: loading…", style="dim")
        elif v.torch is None:
            t.append(Text(v.error or "torch unavailable", style="red"))
        else:
            t.append(f"torch {v.torch}" + (f" · CUDA {v.cuda}" if v.cuda else " · CPU build"),
                     style="dim")
        t.append(f"\nmap_location: {self.map_location}")
        if self.nbytes is not None and s is not None:
            where = self.map_location if self.map_location not in ("keep", "auto") else "auto"
            fit = devices.fits(self.nbytes, s, where)
            style = "green" if fit.fits else "red" if fit.fits is False else "yellow"
            word = "fits" if fit.fits else "does not fit" if fit.fits is False else "fit N/A"
            # short enough for the 26 columns of the pane: size, verdict, device; the
            # free memory below it (the full reason only when there is no figure)
            t.append(f"\nfile {fb(self.nbytes)} {word} {fit.device}", style=style)
            if fit.available is not None:
                t.append(f"\n  {fb(fit.available)} free there", style="dim")
            else:
                t.append(Text(f"\n  {fit.reason}", style="dim"))
        return t
