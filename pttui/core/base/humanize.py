"""Numbers for people: sizes, counts, shapes. Shared by the CLI, the shell and the TUI."""

from __future__ import annotations


def nbytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def count(n: int) -> str:
    """11689512 -> '11.7M'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``3 keys``, ``1 key``: the count as is (no thousands separator), for sentences."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def middle_elided(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by dropping its middle ("…" marks the cut):
    the start and the end (a file's extension) stay."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:max(width, 0)]
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "…" + (text[len(text) - tail:] if tail else "")


def printable(text: str) -> str:
    """A name from a file as a terminal should show it: control characters (a hostile
    file's escape sequences, newlines) become visible escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
