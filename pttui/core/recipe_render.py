"""A recipe written in the words other tools already read, so the repair survives
without pttui: mmengine's ``revise_keys``, transformers' ``key_mapping``, and a plain
Python snippet to paste into training code. Steps a format cannot express become
comments that say why, never silently vanish.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pttui.core.recipe import (AcceptMissing, AddPrefix, Cast, Drop, KeyMap, Op, Recipe,
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
    lines = [*_header(recipe, "transformers key_mapping"), "key_mapping = {", *entries, "}",
             *notes, "# model = AutoModel.from_pretrained(PATH, key_mapping=key_mapping)"]
    return "\n".join(lines) + "\n"


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
    return []  # SelectContainer and AcceptMissing act at load time


def _load_lines(recipe: Recipe, path: str | None) -> list[str]:
    lines = [f"PATH = {path!r}"] if path else ["# set PATH to the checkpoint file"]
    if path and path.endswith(".safetensors"):
        lines += ["sd = safetensors.torch.load_file(PATH)"]
    else:
        lines += ["sd = torch.load(PATH, map_location='cpu', weights_only=True)"]
    if recipe.container:
        index = "".join(f"[{p}]" if p.isdigit() else f"[{p!r}]" for p in recipe.container)
        lines.append(f"sd = sd{index}")
    return lines


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
    """A runnable snippet: load the file, select, rename, drop, cast, load into ``model``."""
    path = path or recipe.source
    body = [line for op in recipe.ops for line in _python_op(op)]
    code = "\n".join(body)
    modules = ["fnmatch"] * ("fnmatch." in code) + ["re", "torch"]
    if path and path.endswith(".safetensors"):
        modules.append("safetensors.torch")
    lines = [*_header(recipe, "plain PyTorch"), "# `model` is your nn.Module",
             f"import {', '.join(modules)}", "", *_load_lines(recipe, path), *body,
             *_strict_lines(recipe)]
    return "\n".join(lines) + "\n"
