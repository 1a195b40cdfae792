"""Key templates for the ops that join or part tensors: ``*`` stands for any text and is
the same text in every template of one op (``*.q_proj.weight`` + ``*.k_proj.weight`` ->
``*.qkv.weight``), ``#`` for an index (``experts.#.w1`` -> one stacked tensor).

A template is invertible, unlike a regex: from a key that fits one template, the keys
of the others follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pttui.core.base.meta import ReadError
from pttui.core.recipe.args import quote


MAX_STARS = 8  # more gives the matcher nothing a user needs, and a regex that backtracks


class Template:
    """One key template; ``fill`` and ``match`` are each other's inverse."""

    __slots__ = ("text", "stars", "index", "_rx")

    def __init__(self, text: object, what: str, *, index: bool = False) -> None:
        if not isinstance(text, str) or not text:
            raise ReadError(f"{what}: expected a key or key template, got {text!r}")
        self.text, self.stars = text, text.count("*")
        if self.stars > MAX_STARS or len(text) > 1000:
            raise ReadError(f"{what}: {quote(text[:60])}: at most {MAX_STARS} `*` in a key "
                            "template of at most 1,000 characters")
        self.index = text.count("#")
        if self.index > (1 if index else 0):
            raise ReadError(f"{what}: {quote(text)}: " + (
                "at most one `#` (the index)" if index else "`#` is only for stack/unstack"))
        if index and not self.index:
            raise ReadError(f"{what}: {quote(text)} needs a `#` where the index goes "
                            "(`experts.#.w1.weight`)")
        parts = []
        for ch in re.split(r"([*#])", text):
            parts.append("(.*?)" if ch == "*" else "(\\d+)" if ch == "#" else re.escape(ch))
        self._rx = re.compile("".join(parts))

    def match(self, key: str) -> tuple[tuple[str, ...], int | None] | None:
        """(the ``*`` texts, the ``#`` index or None) of ``key``, or None."""
        m = self._rx.fullmatch(key)
        if m is None:
            return None
        groups, stars, index = m.groups(), [], None
        for ch, value in zip((c for c in self.text if c in "*#"), groups):
            if ch == "*":
                stars.append(value)
            else:
                if value != str(int(value)):
                    return None  # `01` is not an index
                index = int(value)
        return tuple(stars), index

    def fill(self, stars: Iterable[str], index: int | None = None) -> str:
        texts = iter(stars)
        out = []
        for ch in re.split(r"([*#])", self.text):
            out.append(next(texts) if ch == "*" else str(index) if ch == "#" else ch)
        return "".join(out)


def templates(texts: object, what: str, *, index: bool = False, least: int = 1
              ) -> tuple[Template, ...]:
    """A list of templates with one count of ``*`` among them."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or len(texts) < least:
        raise ReadError(f"{what}: expected a list of at least {least} keys or templates, "
                        f"got {texts!r}")
    out = tuple(Template(t, what, index=index) for t in texts)
    same_stars(out, what)
    if len({t.text for t in out}) != len(out):
        raise ReadError(f"{what}: a key is named twice in {list(texts)!r}")
    return out


def same_stars(group: Iterable[Template], what: str) -> None:
    group = list(group)
    if len({t.stars for t in group}) > 1:
        raise ReadError(f"{what}: every template needs as many `*` as the others "
                        f"({', '.join(quote(t.text) for t in group)})")
