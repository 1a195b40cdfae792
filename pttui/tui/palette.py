"""Command palette providers (ctrl+p): every action, the folder's files, the models.

One provider per domain, as posting does. Each hit runs the same action a key does.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from pttui.tui.keys import KEYS, label

EXTRA = [("unsafe_load", "Load unsafely (weights_only=False)…",
          "runs the file's code in a child process, after a typed confirmation")]


def _main(provider: Provider):
    from pttui.tui.screens.main import MainScreen

    return next((s for s in reversed(provider.app.screen_stack) if isinstance(s, MainScreen)),
                None)


class ActionsProvider(Provider):
    """Every action the main screen has, by its description."""

    def _items(self):
        for k in KEYS:
            yield k.action, f"{k.description}  ({label(k.key)})", k.help
        yield from EXTRA
        yield "app.help", "Help  (f1)", "keys and colours"

    async def _run(self, action: str) -> None:
        main = _main(self)
        if main is not None:
            if action.startswith("app."):
                await self.app.run_action(action)
            else:
                await main.run_action(action)

    async def discover(self) -> Hits:
        for action, name, help_text in self._items():
            yield DiscoveryHit(name, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, name, help_text in self._items():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self._run, action),
                          help=help_text)


class FilesProvider(Provider):
    """Open a file of the folder shown."""

    async def search(self, query: str) -> Hits:
        main = _main(self)
        if main is None:
            return
        from pttui.tui.widgets.files import FilesPane

        matcher = self.matcher(query)
        for entry in main.query_one(FilesPane).entries:
            name = f"Open {entry.name}"
            score = matcher.match(name)
            if score > 0:
                msg = (FilesPane.FolderChosen(entry.path) if entry.is_dir
                       else FilesPane.Chosen(entry))
                yield Hit(score, matcher.highlight(name), partial(main.post_message, msg),
                          help=entry.path)


class ModelsProvider(Provider):
    """Set a torchvision model as the target. The names are read in the background after
    the first paint; until then this provider has nothing to offer (it never blocks)."""

    async def search(self, query: str) -> Hits:
        main = _main(self)
        if main is None:
            return
        matcher = self.matcher(query)
        for name in getattr(self.app, "torchvision_names", None) or []:
            text = f"Model torchvision:{name}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text),
                          partial(main.build_target, f"torchvision:{name}", {}),
                          help="build it on the meta device and compare")
