"""What may come next on a command line: the shell's completer and the TUI's ``:`` line
both ask here, so they offer the same words.

``candidates(ctx, text_before_cursor)`` returns the word being typed and the whole
words it may become (each starts with it), with a short description. Keys complete
one dotted level at a time (``features.`` -> ``features.3.`` -> ``features.3.weight``)
and, for fuzzy matching, as whole keys too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from pttui.commands.context import Context, container_name
from pttui.commands.parser import Spec, split_partial
from pttui.commands.registry import lookup, names
from pttui.core import humanize as hz

FULL_KEYS = 2000  # whole keys offered for fuzzy matching below one dotted level
DTYPES = ("float16", "bfloat16", "float32", "float64")
MAP_LOCATIONS = ("auto", "cpu", "cuda", "meta", "keep")


@dataclass(frozen=True)
class Candidate:
    text: str  # the whole word, starting with the word being typed
    meta: str = ""


def candidates(ctx: Context, text: str, model_names: Sequence[str] = ()
               ) -> tuple[str, list[Candidate]]:
    """``(word being typed, what it may become)`` for the line ``text`` (up to the cursor)."""
    words, partial = split_partial(text)
    if not words:
        return partial, _filter(partial, _commands())
    spec = lookup(words[0])
    if spec is None:
        return partial, []
    kind, choices = _slot(spec, words[1:], partial)
    found = [Candidate(c) for c in choices] if choices else \
        _of_kind(ctx, kind, partial, model_names)
    return partial, _filter(partial, found)


def _filter(partial: str, found: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for c in found:
        if c.text.startswith(partial) and c.text not in seen:
            seen.add(c.text)
            out.append(c)
    return out


def _commands() -> list[Candidate]:
    out = []
    for name in names():
        spec = lookup(name)
        out.append(Candidate(name, spec.summary if spec else ""))
    return out


def _slot(spec: Spec, words: list[str], partial: str) -> tuple[str | None, tuple[str, ...]]:
    """The kind of word expected at the cursor and its fixed choices, if any."""
    if words and words[-1].startswith("--") and "=" not in words[-1]:
        opt = spec.option(words[-1])
        if opt is not None and opt.metavar is not None:
            return opt.kind, opt.choices
    if partial.startswith("-"):
        used = {w for w in words if w.startswith("--")}
        return None, tuple(o.name for o in spec.opts if o.many or o.name not in used)
    positional: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w.startswith("--"):
            opt = spec.option(w.partition("=")[0])
            skip = opt is not None and opt.metavar is not None and "=" not in w
        else:
            positional.append(w)
    if spec.name == "recipe" and len(positional) == 1:  # what ARG is depends on ACTION
        return ("step" if positional[0] == "remove" else "path"
                if positional[0] in ("save", "load") else None), ()
    index = len(positional)
    if index < len(spec.args):
        arg = spec.args[index]
    elif spec.args and spec.args[-1].many:
        arg = spec.args[-1]
    else:
        return None, ()
    return arg.kind, arg.choices


def _of_kind(ctx: Context, kind: str | None, partial: str,
             model_names: Sequence[str]) -> list[Candidate]:
    s = ctx.session
    if kind == "command":
        return _commands()
    if kind == "path":
        return paths(partial)
    if kind == "key":
        return keys(ctx, partial)
    if kind == "model":
        return _models(partial, model_names)
    if kind == "dtype":
        return [Candidate(d) for d in DTYPES]
    if kind == "map-location":
        return [Candidate(m) for m in MAP_LOCATIONS]
    if kind == "container" and s.source is not None:
        return [Candidate(container_name(c.path), f"{c.kind}, {len(c.tensors)} tensors")
                for c in s.source.containers]
    if kind == "global" and s.source is not None:
        return [Candidate(g, "blocked by weights_only") for g in s.source.globals.blocked]
    if kind == "missing" and s.report is not None:
        accepted = set(s.report.accepted_missing)
        return [Candidate(k, "missing") for k in s.report.missing if k not in accepted]
    if kind == "suggestion":
        return [Candidate(str(i), sg.title) for i, sg in enumerate(ctx.numbered(), 1)]
    if kind == "step":
        return [Candidate(str(i), op.describe()) for i, op in enumerate(s.recipe.ops, 1)]
    return []


def keys(ctx: Context, partial: str) -> list[Candidate]:
    """The next dotted level below ``partial``'s parent, then whole keys below it, in the
    file's order."""
    if ctx.session.source is None:
        return []
    parent = partial[:partial.rfind(".") + 1]
    current = ctx.session.current()
    levels: dict[str, int] = {}
    leaves: list[Candidate] = []
    deep: list[str] = []
    for k in current:
        if not k.startswith(parent):
            continue
        head, dot, _ = k[len(parent):].partition(".")
        if dot:
            levels[parent + head + "."] = levels.get(parent + head + ".", 0) + 1
            if len(deep) < FULL_KEYS:
                deep.append(k)
        else:
            leaves.append(_leaf(k, current))
    out = [Candidate(p, hz.plural(n, "tensor")) for p, n in levels.items()]
    return out + leaves + [_leaf(k, current) for k in deep]


def _leaf(key: str, current: dict) -> Candidate:
    m = current.get(key)
    return Candidate(key, f"{hz.shape(m.shape)} {m.dtype}" if m is not None else "")


def paths(partial: str, suffixes: tuple[str, ...] = ()) -> list[Candidate]:
    """Files and folders whose path starts with ``partial`` (``~`` expanded); hidden ones
    only when asked for with a leading dot. ``suffixes`` keeps only matching files."""
    expanded = os.path.expanduser(partial)
    folder, base = os.path.split(expanded)
    shown = partial[:len(partial) - len(base)]
    try:
        entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for e in entries:
        if not e.name.startswith(base) or (e.name.startswith(".") and not base.startswith(".")):
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            continue
        if is_dir:
            out.append(Candidate(shown + e.name + "/", "folder"))
        elif not suffixes or e.name.endswith(suffixes):
            out.append(Candidate(shown + e.name, ""))
    return out


def _models(partial: str, model_names: Sequence[str]) -> list[Candidate]:
    if partial.startswith("torchvision:"):
        return [Candidate(f"torchvision:{n}", "torchvision") for n in model_names]
    if partial.startswith("ref:"):
        return [Candidate("ref:" + c.text, "reference checkpoint") for c in paths(partial[4:])]
    fixed = [Candidate("torchvision:", "a torchvision model"),
             Candidate("ref:", "another checkpoint's keys")]
    return fixed + [Candidate(c.text, c.meta or "file.py:FACTORY")
                    for c in paths(partial, (".py",))]
