"""The pttui Textual app: thin. It holds the launch options and the device sources
(swappable for tests), pushes the main screen, and asks before quitting while a
load or an export runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual.app import App
from textual.binding import Binding

from pttui.tui.palette import ActionsProvider, FilesProvider, ModelsProvider


@dataclass
class LaunchOptions:
    """What ``pttui [PATH] [--model ...]`` asked for."""

    folder: str
    select: str | None = None  # a file to open at start
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    map_location: str = "auto"
    mouse: bool = True

    @classmethod
    def from_path(cls, path: str = ".", **kwargs: Any) -> LaunchOptions:
        """A folder opens as is; a file (or a DCP folder) opens its folder with it selected."""
        full = os.path.abspath(path)
        if os.path.isdir(full) and not os.path.isfile(os.path.join(full, ".metadata")):
            return cls(full, None, **kwargs)
        return cls(os.path.dirname(full), full, **kwargs)


def _snapshot() -> Any:
    from pttui.core.device import snapshot

    return snapshot()


def _versions() -> Any:
    from pttui.core.device import torch_versions

    return torch_versions()


class PttuiApp(App[None]):
    CSS_PATH = "pttui.tcss"
    TITLE = "pttui"
    COMMANDS = App.COMMANDS | {ActionsProvider, FilesProvider, ModelsProvider}
    # ctrl+q is a priority binding, as in Textual's App: it works inside every dialog
    # (the load and export dialogs included), and asks first while work runs
    BINDINGS = [Binding("f1,question_mark", "help", "Help"),
                Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(self, options: LaunchOptions,
                 device_source: Callable[[], Any] | None = None,
                 versions_source: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.options = options
        self.device_source = device_source or _snapshot
        self.versions_source = versions_source or _versions
        self.busy: set[str] = set()  # "load", "export": what quitting would interrupt
        self.torchvision_names: list[str] | None = None

    def on_mount(self) -> None:
        from pttui.tui.screens.main import MainScreen

        self.push_screen(MainScreen(self.options))

    def action_help(self) -> None:
        from pttui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def _unexported_steps(self) -> int:
        """Steps of a recipe the user built and did not export (quitting loses them)."""
        for screen in self.screen_stack:
            steps = getattr(screen, "unexported_steps", None)
            if callable(steps):
                return steps()
        return 0

    async def action_quit(self) -> None:
        from pttui.tui.screens.confirm import ConfirmScreen

        if getattr(self.screen, "quit_confirm", False):
            return  # already asking
        if not self.busy:
            n = self._unexported_steps()
            if not n:
                self.exit()
                return
            body = (f"The recipe for the open file has {n} step{'s' if n != 1 else ''} that "
                    "were not exported; quitting loses them. Export first (e) to keep them.")
            screen = ConfirmScreen("Quit without exporting?", body, yes="Quit")
            screen.quit_confirm = True
            self.push_screen(screen, lambda yes: self.exit() if yes else None)
            return

        what = " and ".join(sorted(self.busy))
        effect = {"load": "the load process is killed",
                  "export": "the export stops and leaves nothing behind",
                  "command": "the command is cancelled"}
        article = "An" if what[0] in "aeiou" else "A"
        body = (f"{article} {what} is running. Quitting now: "
                + "; ".join(effect.get(b, f"the {b} stops") for b in sorted(self.busy)) + ".")

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop_all()
                self.exit()

        screen = ConfirmScreen(f"Stop the {what} and quit?", body, yes="Quit")
        screen.quit_confirm = True
        self.push_screen(screen, answer)

    def _stop_all(self) -> None:
        from pttui.tui.widgets.commandbar import CommandBar

        for screen in self.screen_stack:
            event = getattr(screen, "cancel_event", None)
            if event is not None:
                event.set()
            for bar in screen.query(CommandBar):  # a `:` command's own cancel event
                bar.cancel()
        self.workers.cancel_all()
