"""The danger banner: over every pane, at every terminal size, for a file whose pickle
carries code. It names the calls a full load would make, with their arguments, so a
malicious file never looks like a mild one."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from pttui.core.repair import report_text as rt

MAX_CALLS = 2  # lines of calls in the banner; the Report pane lists them all


class DangerBanner(Static):
    def show(self, ckpt: Any) -> None:
        lines = rt.danger_lines(ckpt) if ckpt is not None else []
        self.display = bool(lines)
        if not lines:
            self.update("")
            return
        head, calls = lines[0], lines[1:]
        text = Text(head, style="bold")
        for c in calls[:MAX_CALLS]:
            text.append("\n")
            text.append(Text(c))  # from the file: plain text, never markup
        if len(calls) > MAX_CALLS:
            text.append(f"\n… {len(calls) - MAX_CALLS} more in the Report pane")
        self.update(text)
