"""prompt_toolkit completion over :func:`pttui.commands.complete.candidates`.

``FuzzyCompleter(DynamicCompleter(...))``: the inner completer offers whole words
(commands, options, paths, dotted key levels, containers, model names); the fuzzy
layer filters them by what is typed after the last ``.``, ``/`` or ``:``, so
``features.3.sq`` offers ``squeeze.`` and ``info exp3`` finds ``...expand3x3...``.
torchvision's model list costs a torch import, so it is built in a background
thread and swapped in when ready; until then the prompt completes everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prompt_toolkit.completion import (CompleteEvent, Completer, Completion,
                                       DynamicCompleter, FuzzyCompleter)
from prompt_toolkit.document import Document

from pttui.commands.complete import candidates


class CommandCompleter(Completer):
    """Whole-word completions for the command language (no fuzziness of its own)."""

    def __init__(self, ctx: Any, model_names: Sequence[str] = ()) -> None:
        self.ctx = ctx
        self.model_names = tuple(model_names)

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        try:
            partial, found = candidates(self.ctx, document.text_before_cursor,
                                        self.model_names)
        except Exception:  # noqa: BLE001 - a completer must never break the prompt
            return
        for c in found:
            rest = c.text[len(partial):]
            yield Completion(rest, 0, display=_shown(partial, c.text), display_meta=c.meta)


def _shown(partial: str, text: str) -> str:
    """What the menu shows: the word from its last separator the user has passed."""
    cut = max(partial.rfind("."), partial.rfind("/"), partial.rfind(":"))
    return text[cut + 1:] or text


class ShellCompleter(Completer):
    """The shell's completer: fuzzy over a swappable :class:`CommandCompleter`."""

    def __init__(self, ctx: Any, model_names: Callable[[], Sequence[str]] | None = None
                 ) -> None:
        self.ctx = ctx
        self.inner: Completer = CommandCompleter(ctx)
        self.fuzzy = FuzzyCompleter(DynamicCompleter(lambda: self.inner))
        self.ready = threading.Event()
        if model_names is None:
            self.ready.set()
        else:
            threading.Thread(target=self._load, args=(model_names,), daemon=True,
                             name="pttui-model-names").start()

    def _load(self, model_names: Callable[[], Sequence[str]]) -> None:
        try:
            names = list(model_names())
        except Exception:  # noqa: BLE001 - no names: complete without them
            names = []
        if names:
            self.inner = CommandCompleter(self.ctx, names)
        self.ready.set()

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        return self.fuzzy.get_completions(document, complete_event)
