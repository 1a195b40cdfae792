"""prompt_toolkit completion over :func:`pttui.commands.complete.candidates`.

``FuzzyCompleter(CommandCompleter(...))``: the inner completer offers whole words
(commands, options, paths, dotted key levels, containers, model names, factories in a
``file.py``, a model's keyword arguments); the fuzzy layer filters them by what is
typed after the last ``.``, ``/`` or ``:``, so ``features.3.sq`` offers ``squeeze.`` and
``info exp3`` finds ``...expand3x3...``. torchvision's model names and keywords cost a
torch import, so a :class:`ModelCatalog` builds them in a background thread; until then
the prompt completes everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, FuzzyCompleter
from prompt_toolkit.document import Document

from pttui.commands.complete import ModelCatalog, candidates


class CommandCompleter(Completer):
    """Whole-word completions for the command language (no fuzziness of its own)."""

    def __init__(self, ctx: Any, models: Sequence[str] | ModelCatalog = ()) -> None:
        self.ctx = ctx
        self.models = models if isinstance(models, ModelCatalog) else ModelCatalog.of(models)

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        try:
            partial, found = candidates(self.ctx, document.text_before_cursor, self.models)
        except Exception:  # noqa: BLE001 - a completer must never break the prompt
            return
        command = not document.text_before_cursor.lstrip().count(" ")  # the first word
        for c in found:
            rest = c.text[len(partial):] + (" " if command else "")  # then its arguments
            yield Completion(rest, 0, display=_shown(partial, c.text), display_meta=c.meta)


def _shown(partial: str, text: str) -> str:
    """What the menu shows: the word from its last separator the user has passed."""
    cut = max(partial.rfind("."), partial.rfind("/"), partial.rfind(":"))
    return text[cut + 1:] or text


class ShellCompleter(Completer):
    """The shell's completer: fuzzy over a :class:`CommandCompleter` whose catalog of
    torchvision models loads in the background (``model_names``/``model_keywords`` are
    its loaders, or pass a ready ``catalog``)."""

    def __init__(self, ctx: Any, model_names: Callable[[], Sequence[str]] | None = None,
                 model_keywords: Callable[[str], Sequence[tuple[str, str]]] | None = None,
                 *, catalog: ModelCatalog | None = None) -> None:
        self.ctx = ctx
        self.catalog = (catalog or ModelCatalog(model_names, model_keywords)).start()
        self.ready = self.catalog.ready
        self.inner = CommandCompleter(ctx, self.catalog)
        self.fuzzy = FuzzyCompleter(self.inner)

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        return self.fuzzy.get_completions(document, complete_event)
