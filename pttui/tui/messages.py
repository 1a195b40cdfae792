"""What workers post back to the main screen. Workers never touch widgets: they
post one of these and the screen updates itself on the event loop."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class FolderRead(Message):
    def __init__(self, folder: str, entries: list, select: str | None, error: str | None,
                 refresh: bool = False):
        super().__init__()
        self.folder, self.entries, self.select, self.error = folder, entries, select, error
        self.refresh = refresh  # the fuller second listing: update the Files pane only


class FileOpened(Message):
    def __init__(self, path: str, ckpt: Any, error: str | None) -> None:
        super().__init__()
        self.path, self.ckpt, self.error = path, ckpt, error


class Analysed(Message):
    def __init__(self, gen: int, analysis: Any) -> None:
        super().__init__()
        self.gen, self.analysis = gen, analysis


class TargetBuilt(Message):
    def __init__(self, target: Any, error: str | None) -> None:
        super().__init__()
        self.target, self.error = target, error


class DevicesPolled(Message):
    def __init__(self, snapshot: Any, plans: Any = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.plans = plans  # (tensors, stored plan, cast plan | None), or None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DevicesPolled)


class VersionsRead(Message):
    def __init__(self, versions: Any) -> None:
        super().__init__()
        self.versions = versions
