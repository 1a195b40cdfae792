"""A recipe written in the words other tools already read, so the repair survives
without pttui: mmengine's ``revise_keys``, transformers' ``key_mapping``, and a plain
Python snippet to paste into training code. Steps a format cannot express become
comments that say why, never silently vanish.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from typing import Any

from pttui.core.recipe import render_values
from pttui.core.recipe.op import Op
from pttui.core.recipe.recipe import (AcceptMissing, AddPrefix, Cast, Drop, KeyMap, Recipe,
                                      RegexRename, SelectContainer, StripPrefix, quote)

Pairs = list[tuple[str, str]]


def _lit(text: str) -> str:
    """A Python literal for ``text``: raw when it has backslashes and a raw string can hold it."""
    if ("\\" in text and text.isprintable() and "'" not in text
            and (len(text) - len(text.rstrip("\\"))) % 2 == 0):
        return f"r'{text}'"
    return repr(text)


def _repl(text: str) -> str:
    """``text`` as a re.sub replacement that inserts it literally."""
    return text.replace("\\", "\\\\")


def _block(head: str, items: Sequence[str], tail: str, inline: int = 3) -> list[str]:
    """``head a, b tail`` when short, else one item a line."""
    if len(items) <= inline:
        return [head + ", ".join(items) + tail]
    return [head, *(f"    {item}," for item in items), tail.lstrip()]


def _header(recipe: Recipe, what: str) -> list[str]:
    made = "".join(f" {word} {quote(value)}" for word, value in
                   (("for", recipe.source), ("->", recipe.target)) if value)
    return [f"# {what}, from a pttui recipe{made}"]


# -- regex renames: mmengine and transformers ----------------------------------------

def _pairs(op: Op) -> Pairs | None:
    """``(pattern, replacement)`` pairs doing what ``op`` does, or None if regexes can't."""
    if isinstance(op, StripPrefix):
        return [("^" + re.escape(op.prefix), "")]
    if isinstance(op, AddPrefix):
        guard = "" if op.only is None else f"(?=.*?(?:{op.only}))"
        return [("^" + guard, _repl(op.prefix))]
    if isinstance(op, RegexRename):
        return [(op.pattern, op.replacement)] if op.count == 0 else None
    if isinstance(op, KeyMap):
        return [("^" + re.escape(old) + "$", _repl(new)) for old, new in op.mapping.items()]
    return None


def _sequential(op: KeyMap) -> Pairs:
    """KeyMap pairs safe to run one after another: a key renamed onto another mapped
    key goes through a temporary name (NUL never occurs in a real key) first."""
    chained = [old for old, new in op.mapping.items() if new != old and new in op.mapping]
    if not chained:
        return _pairs(op) or []
    temp = {old: f"\x00pttui{i}\x00" for i, old in enumerate(chained)}
    first = [("^" + re.escape(old) + "$", _repl(temp.get(old, new)))
             for old, new in op.mapping.items()]
    return first + [("^" + re.escape(t) + "$", _repl(op.mapping[old])) for old, t in temp.items()]


def _caveat(op: Op, tool: str) -> str | None:
    """Why ``tool`` cannot do ``op`` and what to do instead (None: nothing to say)."""
    what = op.describe()
    if op.changes_values:
        return render_values.caveat(op, tool)
    if isinstance(op, SelectContainer):
        if not op.path or (tool == "mmengine" and op.path == ("state_dict",)):
            return None
        return (f"{what}: {tool} reads the weights from the top level"
                f"{' or `state_dict`' if tool == 'mmengine' else ''}; export with "
                "`pttui fix` or pass that part yourself")
    if isinstance(op, Drop):
        return f"{what}: not expressible; these keys load as unexpected (strict=False ignores them)"
    if isinstance(op, Cast):
        return f"{what}: not needed to load; parameters keep the model's own dtype"
    if isinstance(op, AcceptMissing):
        if tool == "transformers":
            return f"{what}: transformers initialises missing keys itself and reports them"
        return f"{what}: load with strict=False"
    if isinstance(op, RegexRename):
        return f"{what}: not expressible; {tool} replaces every match"
    return None


def _regex_listing(recipe: Recipe, tool: str, sequential: bool) -> tuple[list[str], list[str]]:
    """Entry lines (one op's pairs each, with its description) and caveat comments."""
    entries: list[str] = []
    notes: list[str] = []
    for op in recipe.ops:
        pairs = _sequential(op) if sequential and isinstance(op, KeyMap) else _pairs(op)
        if pairs is None:
            note = _caveat(op, tool)
            notes += [f"#   {note}"] if note else []
            continue
        for i, (pat, rep) in enumerate(pairs):
            text = f"({_lit(pat)}, {_lit(rep)})" if sequential else f"{_lit(pat)}: {_lit(rep)}"
            entries.append(f"    {text},{f'  # {op.describe()}' if i == 0 else ''}")
    if notes:
        notes.insert(0, f"# not expressible as {tool} renames:")
    return entries, notes


def to_mmengine(recipe: Recipe) -> str:
    """``revise_keys`` for ``mmengine.runner.load_checkpoint``: applied in order, re.sub each."""
    entries, notes = _regex_listing(recipe, "mmengine", sequential=True)
    strict = not recipe.accepted_missing and not any(isinstance(o, Drop) for o in recipe.ops)
    lines = [*_header(recipe, "mmengine revise_keys"), "revise_keys = [", *entries, "]",
             *notes,
             f"# load_checkpoint(model, PATH, map_location='cpu', strict={strict}, "
             "revise_keys=revise_keys)"]
    return "\n".join(lines) + "\n"


def to_hf(recipe: Recipe) -> str:
    """``key_mapping`` for transformers ``from_pretrained``: the first pattern that
    matches a key renames it, and no other pattern runs on that key."""
    entries, notes = _regex_listing(recipe, "transformers", sequential=False)
    renames = sum(_pairs(op) is not None for op in recipe.ops)
    if renames > 1:
        notes.append(f"# caution: {renames} rename steps, but transformers renames each key by "
                     "the first matching pattern only; a key that needs two steps stays "
                     "half-renamed (use the Python snippet or `pttui fix`)")
    replaced = _replaced_head(recipe)
    if replaced:
        notes.append(f"# {', '.join(replaced[:3])}{' ...' if len(replaced) > 3 else ''}: "
                     "dropped and left to train (another shape in the model): transformers "
                     "does that with ignore_mismatched_sizes=True")
    load = ("# model = AutoModel.from_pretrained(PATH, key_mapping=key_mapping"
            + (", ignore_mismatched_sizes=True)" if replaced else ")"))
    lines = [*_header(recipe, "transformers key_mapping"), "key_mapping = {", *entries, "}",
             *notes, load]
    return "\n".join(lines) + "\n"


def _replaced_head(recipe: Recipe) -> list[str]:
    """Accepted-missing keys a drop removed first: a head of another shape, replaced."""
    from pttui.core.recipe.args import matcher

    drops = [matcher(op.pattern, op.kind) for op in recipe.ops if isinstance(op, Drop)]
    return [k for k in recipe.accepted_missing if any(hit(k) for hit in drops)]


# -- plain Python ----------------------------------------------------------------------

def _match(pattern: str, kind: str) -> str:
    if kind == "glob":
        return f"fnmatch.fnmatchcase(k, {_lit(pattern)})"
    return f"re.search({_lit(pattern)}, k)"


def _cast_test(op: Cast) -> str:
    """The snippet's version of Cast's rule: floating tensors that match, or the named key."""
    floating = "v.is_floating_point()"
    if not (op.kind == "glob" and op.pattern == "*"):
        floating += f" and {_match(op.pattern, op.kind)}"
    exact = op.exact_key
    if exact is None:
        return floating
    return f"k == {exact!r}" if op.kind == "glob" else f"k == {exact!r} or ({floating})"


def _python_op(op: Op) -> list[str]:
    """One op as one or two lines transforming ``sd``."""
    keys = "for k, v in sd.items()"
    if isinstance(op, StripPrefix):
        return [f"sd = {{k.removeprefix({op.prefix!r}): v {keys}}}"]
    if isinstance(op, AddPrefix):
        new = f"{op.prefix!r} + k"
        if op.only is not None:
            new = f"({new} if re.search({_lit(op.only)}, k) else k)"
        return [f"sd = {{{new}: v {keys}}}"]
    if isinstance(op, RegexRename):
        count = f", count={op.count}" if op.count else ""
        return [f"sd = {{re.sub({_lit(op.pattern)}, {_lit(op.replacement)}, k{count}): v {keys}}}"]
    if isinstance(op, KeyMap):
        items = [f"{old!r}: {new!r}" for old, new in op.mapping.items()]
        return [*_block("key_map = {", items, "}"), f"sd = {{key_map.get(k, k): v {keys}}}"]
    if isinstance(op, Drop):
        return [f"sd = {{k: v {keys} if not {_match(op.pattern, op.kind)}}}"]
    if isinstance(op, Cast):
        return [f"sd = {{k: v.to(torch.{op.dtype}) if {_cast_test(op)} else v {keys}}}"]
    if op.changes_values:
        pattern = getattr(op, "pattern", None)
        match = _match(pattern, getattr(op, "kind", "glob")) if pattern is not None else ""
        return render_values.python_lines(op, match)[0]
    return []  # SelectContainer and AcceptMissing act at load time


def _strict_lines(recipe: Recipe) -> list[str]:
    accepted = recipe.accepted_missing
    if not accepted:
        return ["model.load_state_dict(sd)"]
    return [*_block("accepted_missing = {", [repr(k) for k in accepted], "}"),
            "result = model.load_state_dict(sd, strict=False)",
            "assert not result.unexpected_keys, result.unexpected_keys",
            "assert set(result.missing_keys) <= accepted_missing, "
            "set(result.missing_keys) - accepted_missing"]


def to_python(recipe: Recipe, path: str | None = None) -> str:
    """A runnable snippet: load the file (the way its format needs: load_snippet.py),
    select, rename, drop, cast, load into ``model``."""
    from pttui.core.recipe.load_snippet import load_lines

    path = path or recipe.source
    body = [line for op in recipe.ops for line in _python_op(op)]
    helpers = list(dict.fromkeys(h for op in recipe.ops if op.changes_values
                                 for h in render_values.python_lines(op, "")[1]))
    defs = [line for h in helpers for line in (render_values.HELPERS[h] + "\n").splitlines()]
    code = "\n".join(body + defs)
    loading = load_lines(path, recipe.container)
    modules = ["fnmatch"] * ("fnmatch." in code) + ["math"] * ("math." in code) + ["re", "torch"]
    modules += [m for m in loading.imports if m not in modules]
    lines = [*_header(recipe, "plain PyTorch"), "# `model` is your nn.Module",
             f"import {', '.join(modules)}", "", *defs, *loading.lines, *body,
             *_strict_lines(recipe)]
    return "\n".join(lines) + "\n"


# -- the replay command -------------------------------------------------------------------

def _shown_path(path: str, cwd: str) -> str:
    """``path`` relative to ``cwd`` when it lies inside it, else absolute."""
    full = os.path.abspath(os.path.join(cwd, os.path.expanduser(path)))
    try:
        inside = os.path.commonpath([full, cwd]) == cwd
    except ValueError:  # another drive (Windows)
        inside = False
    return os.path.relpath(full, cwd) if inside else full


def _model_arg(key: str, value: Any) -> str:
    """``K=V`` that ``--model-arg`` parses back to ``value`` (a bare word when it can)."""
    from pttui.core.target.model_args import parse_model_args

    if isinstance(value, str):
        try:
            if parse_model_args([f"{key}={value}"]).get(key) == value:
                return f"{key}={value}"
        except Exception:  # noqa: BLE001 - any doubt: the quoted literal below
            pass
    return f"{key}={value!r}"


def replay_command(recipe_path: str, recipe: Recipe, source: str | None = None,
                   out: str | None = None, cwd: str | None = None) -> str:
    """``pttui fix SOURCE --model SPEC [--model-arg K=V ...] --recipe R.json -o OUT`` that
    works when pasted in ``cwd`` (default: the current folder, where pttui was run):
    the recipe with its folder, the model arguments the recipe stores, every word
    shell-quoted. ``source`` defaults to the recipe's; ``out`` (the file just written)
    becomes ``STEM.replay.EXT`` when it exists, so the command does not stop at it."""
    cwd = os.path.abspath(cwd or os.getcwd())
    words = ["pttui", "fix", _shown_path(source or recipe.source, cwd)
             if (source or recipe.source) else "CHECKPOINT"]
    words += ["--model", recipe.target or "SPEC"]
    for key, value in recipe.model_args.items():
        words += ["--model-arg", _model_arg(key, value)]
    words += ["--recipe", _shown_path(recipe_path, cwd)]
    if out is None:
        out = "OUT.safetensors"
    elif os.path.lexists(os.path.join(cwd, os.path.expanduser(out))):
        stem, ext = os.path.splitext(out)
        out = f"{stem}.replay{ext}"
    words += ["-o", _shown_path(out, cwd)]
    return shlex.join(words)
