"""The Textual front. ``pttui.tui.run`` is the entry; importing this package is cheap."""

from __future__ import annotations

from typing import Any


def run(path: str = ".", *, model: str | None = None, model_args: dict[str, Any] | None = None,
        map_location: str = "auto", mouse: bool = True) -> int:
    """Open the TUI on ``path`` (a folder, or a file selected within its folder)."""
    from pttui.tui.app import LaunchOptions, PttuiApp

    options = LaunchOptions.from_path(path, model=model, model_args=dict(model_args or {}),
                                      map_location=map_location, mouse=mouse)
    PttuiApp(options).run(mouse=mouse)
    return 0
