"""Model arguments: the ``K=V`` pairs typed after a model spec, as Python values.

Kept apart from target building so the CLI, the shell and recipes can parse and
check arguments without touching the code that imports and builds models.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from pttui.core.base.meta import ReadError

_WORDS = {"true": True, "false": False, "none": None, "null": None}


class ModelArgs(dict):
    """Parsed ``K=V`` model arguments; ``bare`` names the keys whose value was no Python
    literal and so was kept as the string typed (``arch=resnet``), for error messages."""

    bare: frozenset[str] = frozenset()


def parse_model_args(pairs: list[str]) -> ModelArgs:
    """``["num_classes=10", "arch=resnet"]`` -> ``{"num_classes": 10, "arch": "resnet"}``.

    Values are Python literals (``ast.literal_eval``, never ``eval``); anything else
    stays the raw string, and ``true``/``false``/``none`` are accepted as on a shell.
    A key given twice is an error (which one was meant?).
    """
    out = ModelArgs()
    raw_of: dict[str, str] = {}
    bare: set[str] = set()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ReadError(f"bad model argument {pair!r}: expected KEY=VALUE, "
                            "e.g. num_classes=10")
        if key in out:
            raise ReadError(f"model argument {key} is given twice ({key}={raw_of[key]} and "
                            f"{key}={raw.strip()}); give it once")
        raw_of[key] = raw.strip()
        out[key], literal = _literal(raw.strip())
        if not literal:
            bare.add(key)
    out.bare = frozenset(bare)
    return out


def _literal(raw: str) -> tuple[object, bool]:
    """The value and whether it was a literal (else it is ``raw`` itself, a string)."""
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()], True
    try:
        return ast.literal_eval(raw), True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw, False


def _string_hint(args: Mapping[str, Any]) -> str:
    """After a factory failed: which arguments it got as strings (a bare word like
    ``num_classes=abc`` is no literal, so it arrives as ``'abc'``)."""
    bare = getattr(args, "bare", frozenset())
    words = [k for k, v in args.items() if isinstance(v, str) and k in bare]
    if not words:
        return ""
    said = ", ".join(f"{k}={args[k]}" for k in words)
    got = ", ".join(repr(args[k]) for k in words)
    return (f"; note: {said} is not a Python literal, so it was passed as the string "
            f"{got} and the model rejected it")
