"""The command language's grammar: shell-like words, per-command options, one-line errors.

Words are split with :mod:`shlex` (quote a regex: ``rename '^module\\.' ''``). Options
are ``--name VALUE`` or ``--name=VALUE``; a single ``-`` starts no option, so a pattern
or a negative number passes as it is; ``--`` ends the options. The same specs drive
parsing, ``help`` and completion, so the three never disagree.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ParseError(Exception):
    """A command line that cannot be run; ``str(err)`` is one line that says why."""


@dataclass(frozen=True)
class Arg:
    """A positional argument. ``kind`` tells the completer what to offer."""

    name: str
    kind: str | None = None
    optional: bool = False
    many: bool = False  # takes every remaining word (one or more; none if optional)
    choices: tuple[str, ...] = ()
    help: str = ""
    dest: str = ""

    @property
    def key(self) -> str:
        return self.dest or self.name.lower().replace("-", "_")


@dataclass(frozen=True)
class Opt:
    """An option: a flag when ``metavar`` is None, else it takes one value."""

    name: str
    metavar: str | None = None
    help: str = ""
    kind: str | None = None
    convert: Callable[[str], Any] | None = None
    many: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def key(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Spec:
    """One command: its words, options, and the help text that explains it."""

    name: str
    summary: str
    args: tuple[Arg, ...] = ()
    opts: tuple[Opt, ...] = ()
    help: str = ""
    aliases: tuple[str, ...] = ()
    slow: bool = False  # may take seconds: run it in a worker, offer Ctrl-C
    examples: tuple[str, ...] = field(default_factory=tuple)

    def option(self, name: str) -> Opt | None:
        return next((o for o in self.opts if o.name == name), None)

    def usage(self) -> str:
        words = [self.name]
        for a in self.args:
            text = f"{a.name} ..." if a.many else a.name
            words.append(f"[{text}]" if a.optional else text)
        for o in self.opts:
            text = o.name if o.metavar is None else f"{o.name} {o.metavar}"
            words.append(f"[{text}{' ...' if o.many else ''}]")
        return " ".join(words)


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expects a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"expects a number >= 0, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"expects a positive number of seconds, got {text!r}")
    return value


def split(line: str) -> list[str]:
    """The words of ``line``; an unclosed quote is a ParseError."""
    try:
        return shlex.split(line)
    except ValueError as err:
        raise ParseError(f"cannot split the line into words ({err}); close the quote") from None


def split_partial(text: str) -> tuple[list[str], str]:
    """For completion: the finished words before the cursor, and the word being typed."""
    for closing in ("", '"', "'"):
        try:
            words = shlex.split(text + closing)
            break
        except ValueError:
            continue
    else:
        return [], ""
    if not words or (text and text[-1].isspace() and not closing):
        return words, ""
    return words[:-1], words[-1]


def bind(spec: Spec, words: list[str]) -> dict[str, Any]:
    """Match ``words`` (after the command name) to ``spec``: ``{key: value}``."""
    values: dict[str, Any] = {o.key: ([] if o.many else (False if o.metavar is None
                                                        else o.default)) for o in spec.opts}
    positional: list[str] = []
    i, options_done = 0, False
    while i < len(words):
        word = words[i]
        i += 1
        if options_done or not word.startswith("--") or word == "--":
            if word == "--" and not options_done:
                options_done = True
            else:
                positional.append(word)
            continue
        name, eq, raw = word.partition("=")
        opt = spec.option(name)
        if opt is None:
            raise ParseError(_unknown_option(spec, name))
        if opt.metavar is None:
            if eq:
                raise ParseError(f"{spec.name}: {name} takes no value")
            values[opt.key] = True
            continue
        if not eq:
            if i >= len(words):
                raise ParseError(f"{spec.name}: {name} needs a value ({name} {opt.metavar})")
            raw = words[i]
            i += 1
        value = _convert(spec, opt.name, raw, opt.choices, opt.convert)
        if opt.many:
            values[opt.key].append(value)
        else:
            values[opt.key] = value
    _bind_positional(spec, positional, values)
    return values


def _bind_positional(spec: Spec, words: list[str], values: dict[str, Any]) -> None:
    rest = list(words)
    for arg in spec.args:
        if arg.many:
            if not rest and not arg.optional:
                raise ParseError(f"{spec.name}: missing {arg.name} (usage: {spec.usage()})")
            values[arg.key] = [_convert(spec, arg.name, w, arg.choices, None) for w in rest]
            rest = []
        elif rest:
            values[arg.key] = _convert(spec, arg.name, rest.pop(0), arg.choices, None)
        elif arg.optional:
            values[arg.key] = None
        else:
            raise ParseError(f"{spec.name}: missing {arg.name} (usage: {spec.usage()})")
    if rest:
        extra = " ".join(shlex.quote(w) for w in rest)
        raise ParseError(f"{spec.name}: unexpected {extra} (usage: {spec.usage()}); quote a "
                         "word that holds spaces")


def _convert(spec: Spec, what: str, raw: str, choices: tuple[str, ...],
             convert: Callable[[str], Any] | None) -> Any:
    if choices and raw not in choices:
        raise ParseError(f"{spec.name}: {what} must be one of {', '.join(choices)}, "
                         f"not {raw!r}")
    if convert is None:
        return raw
    try:
        return convert(raw)
    except ValueError as err:
        raise ParseError(f"{spec.name}: {what} {err}") from None


def _unknown_option(spec: Spec, name: str) -> str:
    names = [o.name for o in spec.opts]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if close:
        return f"{spec.name}: unknown option {name}; did you mean {close[0]}?"
    if names:
        return f"{spec.name}: unknown option {name} (it takes {', '.join(names)})"
    return f"{spec.name}: takes no options, got {name} (put -- before a word that starts with --)"
