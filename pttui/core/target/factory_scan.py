"""The factories of a model file, found by parsing it with :mod:`ast`.

Completing ``path/to/file.py:NAME k=v`` needs the file's top-level functions and
classes and their keyword parameters; importing the file would run the user's code,
so it is parsed instead (cached by path, mtime and size).
"""

from __future__ import annotations

import ast
import os

_MAX_SOURCE = 2_000_000  # bytes of a factory file parsed for completion
_parsed: dict[tuple[str, float, int], list[tuple[str, str, list[tuple[str, str]]]]] = {}


def file_factories(path: str) -> list[tuple[str, str]]:
    """``[(name, "def (num_classes=10)"), ...]``: the top-level functions and classes of
    the Python file ``path``, found by parsing it (never importing it: completing a name
    must not run the user's code). [] when it cannot be read or parsed."""
    return [(name, what) for name, what, _ in _parse_factories(path)]


def factory_keywords(path: str, name: str) -> list[tuple[str, str]]:
    """The keyword parameters of the top-level function or class ``name`` in ``path``
    (a class: its ``__init__``), found by parsing the file; [] if unknown."""
    for found, _, keywords in _parse_factories(path):
        if found == name:
            return keywords
    return []


def _parse_factories(path: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    try:
        st = os.stat(path)
        if not os.path.isfile(path) or st.st_size > _MAX_SOURCE:
            return []
        key = (os.path.abspath(path), st.st_mtime, st.st_size)
        if key in _parsed:
            return _parsed[key]
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            keywords = _ast_keywords(node.args, skip_first=False)
            out.append((node.name, f"def ({_preview(keywords)})", keywords))
        elif isinstance(node, ast.ClassDef):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                         and n.name == "__init__"), None)
            keywords = _ast_keywords(init.args, skip_first=True) if init else []
            out.append((node.name, f"class ({_preview(keywords)})", keywords))
    if len(_parsed) > 64:
        _parsed.clear()
    _parsed[key] = out
    return out


def _ast_keywords(args: ast.arguments, skip_first: bool) -> list[tuple[str, str]]:
    positional = list(args.posonlyargs) + list(args.args)
    plain = list(args.args)
    firsts = len(positional) - len(args.defaults)
    defaults: dict[str, ast.expr] = {a.arg: d for a, d in zip(positional[firsts:], args.defaults)}
    defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d})
    if skip_first and positional:
        if positional[0] in plain:
            plain.remove(positional[0])
    out = []
    for a in plain + list(args.kwonlyargs):
        d = defaults.get(a.arg)
        out.append((a.arg, "required" if d is None else
                    f"default {_source(d)}"))
    return out


def _source(node: ast.expr) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001
        return "…"
    return text if len(text) <= 30 else text[:29] + "…"


def _preview(keywords: list[tuple[str, str]]) -> str:
    parts = [k if d == "required" else f"{k}={d.removeprefix('default ')}"
             for k, d in keywords[:3]]
    return ", ".join(parts) + (", …" if len(keywords) > 3 else "")
