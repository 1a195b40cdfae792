"""Shared pieces of the TUI tests: a fake device source, an app factory, ``settle``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from pttui.core.device.devices import CpuInfo, DeviceSnapshot, GpuInfo, TorchVersions
from pttui.tui.app import LaunchOptions, PttuiApp

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_checkpoints"
SQUEEZE = "torchvision:squeezenet1_1"


def fake_snapshot() -> DeviceSnapshot:
    """One GPU and fixed RAM, so screenshots do not depend on the machine."""
    gpu = GpuInfo(0, 0, "NVIDIA H100 80GB HBM3", "GPU-fake", 80 << 30, 2 << 30, 78 << 30, 3, 41)
    return DeviceSnapshot(CpuInfo(16, 8, 16, 64 << 30, 48 << 30), [gpu], "nvml", None, "550.54",
                          taken_at=0.0)


def fake_versions() -> TorchVersions:
    return TorchVersions("2.14.1", "12.4", 90100, True, 1)


def make_app(path, **kwargs) -> PttuiApp:
    return PttuiApp(LaunchOptions.from_path(str(path), **kwargs), fake_snapshot, fake_versions)


async def settle(app, pilot, rounds: int = 3) -> None:
    """Wait until no worker runs and their messages are handled (workers start workers:
    folder -> open -> analyse, so wait until it stays quiet)."""
    quiet = 0
    for _ in range(400):
        await pilot.pause(0.02)
        main = next((s for s in app.screen_stack if hasattr(s, "first_paint")), None)
        if main is None or main.first_paint is None:
            continue  # the workers that import torch start after the first paint
        busy = [w for w in app.workers if w.is_running and w.group != "devices"]
        if busy:
            quiet = 0
            # A worker that fails is the app's to report (tests check that it does);
            # waiting must not raise the worker's error into the test.
            await asyncio.gather(*(w.wait() for w in busy), return_exceptions=True)
        else:
            quiet += 1
            if quiet >= rounds:
                break
    await pilot.pause(0.05)


async def until(pilot, condition, seconds: float = 10.0) -> None:
    """Wait until `condition()` holds: a screen that is pushed or popped shows on a later
    turn of the loop, later still on a loaded machine."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), "timed out waiting"


def screen_text(app) -> list[str]:
    """The terminal as the user sees it, one string per line (dialogs over their screen)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.fixture
def folder(tmp_path):
    """A private copy of the samples the flows use (exports land beside them)."""
    for name in ("squeezenet1_1_dataparallel.pt", "squeezenet1_1_finetuned_10cls.pt",
                 "squeezenet1_1.pt", "squeezenet1_1_compiled.pt", "tiny_vit_cuda.pt",
                 "tiny_vit_training_state.pt", "tiny_vit_torchscript.pt", "truncated.pt"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    shutil.copytree(SAMPLES / "tiny_vit_dcp", tmp_path / "tiny_vit_dcp")
    return tmp_path
