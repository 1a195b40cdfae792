"""The arguments of recipe ops, checked when an op is built: regexes, globs, dtypes.

Every refusal is one line in the words the user typed (``rename``, ``drop``,
``cast``), never the JSON op names, and says what to do instead.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from pttui.core.base.dtypes import canonical, is_floating
from pttui.core.base.meta import ReadError

# What Cast may store: real floating dtypes. An integer or bool target would turn
# weights into truncated integers (0 for most of them), and complex ones are no
# parameter dtype a model expects.
CAST_DTYPES = ("float16", "bfloat16", "float32", "float64")


def quote(text: str) -> str:
    """`text` in backticks, or its repr when it holds characters a one-line message can't."""
    return f"`{text}`" if text.isprintable() and "`" not in text else repr(text)


def compile_regex(pattern: Any, what: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ReadError(f"{what}: expected a regex string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ReadError(f"{what}: invalid regex {quote(pattern)}: {err}") from None


def need_str(value: Any, what: str, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise ReadError(f"{what}: expected a non-empty string, got {value!r}")


def matcher(pattern: str, kind: str, what: str | None = None) -> Callable[[str], bool]:
    """A key predicate: ``glob`` matches the whole key (fnmatchcase), ``regex`` searches it.
    ``what`` (the command: ``drop``, ``cast``) starts any error message."""
    if kind == "glob":
        need_str(pattern, what or "glob pattern")
        return lambda key: fnmatch.fnmatchcase(key, pattern)
    if kind == "regex":
        rx = compile_regex(pattern, what or "pattern")
        return lambda key: rx.search(key) is not None
    raise ReadError(f"pattern kind must be `glob` or `regex`, not {kind!r}")


def literal_key(pattern: str, kind: str) -> str | None:
    """The one key ``pattern`` names exactly (no wildcards), else None."""
    if kind == "glob":
        return None if any(c in pattern for c in "*?[") else pattern
    body = pattern.removeprefix("^").removesuffix("$")
    text = re.sub(r"\\(.)", r"\1", body)
    return text if re.escape(text) == body else None


_PROBES = ("ab", "a.b", "layer.0.weight")


def rename_regex(pattern: Any) -> re.Pattern[str]:
    """The compiled pattern of a ``rename``; refuses one that would garble every key.

    An empty pattern (or one like ``x*`` or ``(a|)`` that matches the empty string
    between any two characters) makes ``re.sub`` insert the replacement between every
    character: ``module`` -> ``xmxoxdxuxlxex``. Anchored empty matches (``^``, ``$``)
    and lookarounds (``(?=\\.)``) insert at chosen places and stay allowed.
    """
    rx = compile_regex(pattern, "rename")
    if pattern == "":
        raise ReadError("rename: the pattern is empty, so it would insert the replacement "
                        "between every character of every key; give a regex to find "
                        "(`^` to add a prefix, `$` a suffix)")
    if rx.fullmatch("") is not None and any(
            (m := rx.match(probe, pos)) is not None and m.end() == pos
            for probe in _PROBES for pos in range(1, len(probe))):
        raise ReadError(f"rename: the pattern {quote(pattern)} matches the empty string "
                        "between characters, so it would insert the replacement all through "
                        "every key; make it match at least one character, or anchor it "
                        "(`^` for a prefix, `$` for a suffix)")
    return rx


def cast_dtype(name: Any) -> str:
    """The canonical name of a dtype Cast may store, else a one-line ReadError."""
    need_str(name, "cast dtype")
    dtype = canonical(name)
    if dtype is None:
        raise ReadError(f"cast: unknown dtype {quote(name)} (use one of "
                        f"{', '.join(CAST_DTYPES)})")
    if dtype not in CAST_DTYPES:
        if is_floating(dtype):
            raise ReadError(f"cast: pttui does not cast to {dtype}; cast to one of "
                            f"{', '.join(CAST_DTYPES)}")
        raise ReadError(f"cast: {dtype} is not a floating dtype: weights cast to it lose their "
                        f"values (most become 0); cast to one of {', '.join(CAST_DTYPES)}")
    return dtype
