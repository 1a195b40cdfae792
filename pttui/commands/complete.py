"""What may come next on a command line: the shell's completer and the TUI's ``:`` line
both ask here, so they offer the same words.

``candidates(ctx, text_before_cursor, models)`` returns the word being typed and the
whole words it may become (each starts with it), with a short description. Keys
complete one dotted level at a time (``features.`` -> ``features.3.`` ->
``features.3.weight``) and, for fuzzy matching, as whole keys too. After ``model
file.py:`` come the file's top-level functions and classes (the file is parsed, never
imported), after a model spec its keyword arguments (``num_classes=``).

torchvision's model names and keywords cost a torch import, so a :class:`ModelCatalog`
builds them in a background thread; until it is ready they are simply not offered.
``complete_line`` gives whole lines, for a front without a completion menu (the TUI's
``:`` line suggests the first one inline).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pttui.commands.context import Context, container_name
from pttui.commands.parser import Spec, split_partial
from pttui.commands.registry import lookup, names
from pttui.core.base import humanize as hz

FULL_KEYS = 2000  # whole keys offered for fuzzy matching below one dotted level
DTYPES = ("float16", "bfloat16", "float32", "float64")
MAP_LOCATIONS = ("auto", "cpu", "cuda", "meta", "keep")


@dataclass(frozen=True)
class Candidate:
    text: str  # the whole word, starting with the word being typed
    meta: str = ""


class ModelCatalog:
    """torchvision's model names and each builder's keyword arguments, for completion.

    Building them imports torch and torchvision (seconds), so :meth:`start` does it in a
    daemon thread; until ``ready`` is set, ``names`` is empty and ``keywords`` gives
    nothing, and completion offers everything else at once. A loader that fails leaves
    the catalog empty (but ready). The shell and the TUI share :func:`model_catalog`.
    """

    def __init__(self, names: Callable[[], Sequence[str]] | None = None,
                 keywords: Callable[[str], Sequence[tuple[str, str]]] | None = None) -> None:
        self._names_fn, self._keywords_fn = names, keywords
        self.names: tuple[str, ...] = ()
        self._keywords: dict[str, tuple[tuple[str, str], ...]] = {}
        self.ready = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, names: Sequence[str], keywords: dict[str, Sequence[tuple[str, str]]] | None
           = None) -> ModelCatalog:
        """A catalog that is ready at once (tests, or names known already)."""
        cat = cls()
        cat.names = tuple(names)
        cat._keywords = {k: tuple(v) for k, v in (keywords or {}).items()}
        cat.ready.set()
        return cat

    def start(self) -> ModelCatalog:
        """Begin loading in the background (once); returns self."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        if self._names_fn is None:
            self.ready.set()
        else:
            threading.Thread(target=self._load, daemon=True, name="pttui-model-names").start()
        return self

    def _load(self) -> None:
        try:
            names = tuple(self._names_fn() or ()) if self._names_fn else ()
        except Exception:  # noqa: BLE001 - no names: complete without them
            names = ()
        keywords: dict[str, tuple[tuple[str, str], ...]] = {}
        if self._keywords_fn is not None:
            for name in names:
                try:
                    keywords[name] = tuple(self._keywords_fn(name))
                except Exception:  # noqa: BLE001
                    continue
        self._keywords = keywords
        self.names = names
        self.ready.set()

    def keywords(self, name: str) -> tuple[tuple[str, str], ...]:
        return self._keywords.get(name, ())


_CATALOG: ModelCatalog | None = None


def model_catalog() -> ModelCatalog:
    """The process's torchvision catalog, loading in the background from the first call."""
    global _CATALOG
    if _CATALOG is None:
        from pttui.core.target import torchvision_keywords, torchvision_models

        _CATALOG = ModelCatalog(torchvision_models, torchvision_keywords)
    return _CATALOG.start()


def candidates(ctx: Context, text: str, models: Sequence[str] | ModelCatalog = ()
               ) -> tuple[str, list[Candidate]]:
    """``(word being typed, what it may become)`` for the line ``text`` (up to the cursor).

    ``models`` is a :class:`ModelCatalog` (names and keywords) or just the names."""
    catalog = models if isinstance(models, ModelCatalog) else ModelCatalog.of(models)
    words, partial = split_partial(text)
    if not words:
        return partial, _filter(partial, _commands())
    spec = lookup(words[0])
    if spec is None:
        return partial, []
    kind, choices, positional = _slot(spec, words[1:], partial)
    if choices:
        found = [Candidate(c) for c in choices]
    elif kind == "model-arg":
        found = _model_keywords(positional, partial, catalog)
    else:
        found = _of_kind(ctx, kind, partial, catalog)
    return partial, _filter(partial, found)


def complete_line(ctx: Context, text: str, models: Sequence[str] | ModelCatalog = ()
                  ) -> list[str]:
    """``text`` completed each way :func:`candidates` offers (prefix matches only, no
    fuzziness): whole lines that start with ``text``. For the TUI's ``:`` line, which
    shows the first one inline and takes it with Tab."""
    partial, found = candidates(ctx, text, models)
    return [text + c.text[len(partial):] for c in found if c.text != partial]


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


def _slot(spec: Spec, words: list[str], partial: str
          ) -> tuple[str | None, tuple[str, ...], list[str]]:
    """The kind of word expected at the cursor, its fixed choices if any, and the
    positional words before it."""
    if words and words[-1].startswith("--") and "=" not in words[-1]:
        opt = spec.option(words[-1])
        if opt is not None and opt.metavar is not None:
            return opt.kind, opt.choices, []
    if partial.startswith("-"):
        used = {w for w in words if w.startswith("--")}
        return None, tuple(o.name for o in spec.opts if o.many or o.name not in used), []
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
                if positional[0] in ("save", "load") else None), (), positional
    index = len(positional)
    if index < len(spec.args):
        arg = spec.args[index]
    elif spec.args and spec.args[-1].many:
        arg = spec.args[-1]
    else:
        return None, (), positional
    return arg.kind, arg.choices, positional


def _of_kind(ctx: Context, kind: str | None, partial: str,
             catalog: ModelCatalog) -> list[Candidate]:
    s = ctx.session
    if kind == "command":
        return _commands()
    if kind == "path":
        return paths(partial)
    if kind == "key":
        return keys(ctx, partial)
    if kind == "model":
        return _models(partial, catalog)
    if kind == "dtype":
        return [Candidate(d) for d in DTYPES]
    if kind == "map-location":
        return [Candidate(m) for m in MAP_LOCATIONS]
    if kind == "container" and s.source is not None:
        return [Candidate(container_name(c.path), f"{c.kind}, {len(c.tensors)} tensors")
                for c in s.source.containers]
    if kind == "global" and s.source is not None:
        from pttui.core.read.pickle import classify  # TorchScript's own types are not offered

        return [Candidate(g, "blocked by weights_only, safe to allow-list")
                for g in s.source.globals.blocked if classify(g) == "blocked"]
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


def _models(partial: str, catalog: ModelCatalog) -> list[Candidate]:
    if partial.startswith("torchvision:"):
        return [Candidate(f"torchvision:{n}", "torchvision") for n in catalog.names]
    if partial.startswith("ref:"):
        return [Candidate("ref:" + c.text, "reference checkpoint") for c in paths(partial[4:])]
    cut = partial.rfind(".py:")
    if cut >= 0:  # a factory in that file: parsed, never imported
        from pttui.core.target import file_factories

        path = partial[:cut + 3]
        found = [Candidate(f"{path}:{name}", what)
                 for name, what in file_factories(os.path.expanduser(path))]
        return sorted(found, key=lambda c: c.text.rpartition(":")[2].startswith("_"))
    fixed = [Candidate("torchvision:", "a torchvision model"),
             Candidate("ref:", "another checkpoint's keys")]
    return fixed + [Candidate(c.text, c.meta or "file.py:FACTORY")
                    for c in paths(partial, (".py",))]


def _model_keywords(positional: list[str], partial: str,
                    catalog: ModelCatalog) -> list[Candidate]:
    """``KEY=`` for the keyword arguments of the model named by ``positional[0]``, less
    those already given; nothing once ``=`` is typed (values are free)."""
    if not positional or "=" in partial:
        return []
    spec = positional[0]
    given = {w.partition("=")[0] for w in positional[1:]}
    head, _, tail = spec.partition(":")
    if head == "torchvision":
        found = catalog.keywords(tail)
    else:
        where, sep, attr = spec.rpartition(":")
        if not sep or not where.endswith(".py"):
            return []  # ref: takes none; pkg.mod:factory would need an import
        from pttui.core.target import factory_keywords

        found = factory_keywords(os.path.expanduser(where), attr)
    return [Candidate(f"{k}=", meta) for k, meta in found if k not in given]
