"""A radio button and a checkbox whose state shows by shape, not by colour alone.

Textual draws an unset toggle as a dim ``X`` / ``●`` on a dark panel, which on many
themes and on 16-colour terminals reads much like a set one. These draw ``( )`` /
``[ ]`` when unset and ``(●)`` / ``[x]`` when set, legible in any palette.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox, RadioButton


class _Shaped:
    LEFT, ON, RIGHT = "[", "x", "]"
    value: bool

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")  # type: ignore[attr-defined]
        mark = self.ON if self.value else " "
        return Content.assemble(self.LEFT, (mark, style), self.RIGHT)


class Radio(_Shaped, RadioButton):
    LEFT, ON, RIGHT = "(", "●", ")"


class Check(_Shaped, Checkbox):
    pass
