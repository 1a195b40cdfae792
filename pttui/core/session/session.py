"""The state the TUI and the shell both show: one source, one target, one recipe.

A Session only stores what it is given and keeps undo/redo of recipe states; comparing
lives elsewhere and plugs in through ``recompute``. Every change calls ``recompute``
(to refresh ``report``) and then each listener, so every front redraws from the same
state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pttui.core.base.meta import Checkpoint, TensorMeta
from pttui.core.recipe.recipe import Op, Recipe

Listener = Callable[["Session"], object]


class Session:
    """Source + target + policy + recipe + last report, with undo/redo of the recipe."""

    def __init__(self, source: Checkpoint | None = None, target: Any = None,
                 recipe: Recipe | None = None, policy: Any = None,
                 recompute: Callable[[Session], object] | None = None) -> None:
        self.source = source
        self.target = target
        self.recipe = recipe if recipe is not None else self._fresh_recipe(source)
        self.policy: Any = {} if policy is None else policy
        self.report: Any = None
        self.recompute = recompute
        self.listeners: list[Listener] = []
        self._undo: list[Recipe] = []
        self._redo: list[Recipe] = []
        self._cache: tuple[tuple, dict[str, TensorMeta]] | None = None

    # -- reading -------------------------------------------------------------------

    def current(self) -> dict[str, TensorMeta]:
        """The selected container's tensors after the recipe (cached until a change)."""
        state = self._state()
        if self._cache is None or not _same_state(self._cache[0], state):
            self._cache = (state, self._run(self.recipe))
        return dict(self._cache[1])

    def preview(self, op: Op | None = None) -> dict[str, TensorMeta]:
        """What ``current()`` would be with ``op`` applied; changes nothing. A conflicting
        op raises RecipeConflict, as apply would."""
        return self.current() if op is None else self._run(self.recipe.with_op(op))

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- changing ------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        """Add ``op`` to the recipe (undoable). An op that fails on this source (a rename
        conflict, a missing container) raises and leaves the session unchanged."""
        self.set_recipe(self.recipe.with_op(op))

    def remove(self, index: int) -> None:
        """Take the op at ``index`` out of the recipe (undoable)."""
        ops = list(self.recipe.ops)
        del ops[index]
        self.set_recipe(self.recipe.copy(ops=ops))

    def set_recipe(self, recipe: Recipe) -> None:
        """Replace the whole recipe (a loaded file, an edited list); undoable."""
        self._run(recipe)  # validate before anything changes
        self._undo.append(self.recipe)
        self._redo.clear()
        self.recipe = recipe
        self._changed()

    def undo(self) -> bool:
        return self._step(self._undo, self._redo)

    def redo(self) -> bool:
        return self._step(self._redo, self._undo)

    def set_source(self, ckpt: Checkpoint | None) -> None:
        """Show ``ckpt``. A different file starts a fresh recipe and forgets undo; the
        same file read again (same path) keeps the recipe."""
        same = (ckpt is not None and self.source is not None and ckpt.path == self.source.path)
        self.source = ckpt
        if not same:
            self.recipe = self._fresh_recipe(ckpt)
            self._undo.clear()
            self._redo.clear()
            self._forget_allow_list()
        self._changed()

    def set_target(self, target: Any) -> None:
        self.target = target
        self._changed()

    def recipe_for_file(self) -> Recipe:
        """The recipe as it is saved and exported: a copy with what it was made for filled
        in (the source's path, the model's spec and arguments), whichever front end set
        them."""
        recipe = self.recipe.copy()
        if self.source is not None:
            recipe.source = self.source.path
        if self.target is not None:
            recipe.target = getattr(self.target, "spec", None)
            recipe.model_args = dict(getattr(self.target, "args", {}) or {})
        return recipe

    def set_policy(self, policy: Any) -> None:
        self.policy = policy
        self._changed()

    def refresh(self) -> None:
        """Recompute and notify after a change made in place (a policy field, say)."""
        self._changed()

    # -- internals -----------------------------------------------------------------

    def _forget_allow_list(self) -> None:
        """Globals allowed for one file's load belong to that file, not to the next one
        (the map_location and the other choices stay)."""
        if isinstance(self.policy, dict):
            self.policy.pop("allow_globals", None)
        elif getattr(self.policy, "allow_globals", None):
            import dataclasses

            self.policy = dataclasses.replace(self.policy, allow_globals=())

    def _fresh_recipe(self, ckpt: Checkpoint | None) -> Recipe:
        old = getattr(self, "recipe", None)
        return Recipe(source=ckpt.path if ckpt is not None else None,
                      target=old.target if old else None,
                      model_args=dict(old.model_args) if old else {})

    def _run(self, recipe: Recipe) -> dict[str, TensorMeta]:
        return recipe.apply_to(self.source) if self.source is not None else {}

    def _state(self) -> tuple:
        src = self.source
        return (src, src.selected if src is not None else None, tuple(self.recipe.ops))

    def _step(self, pop_from: list[Recipe], push_to: list[Recipe]) -> bool:
        if not pop_from:
            return False
        push_to.append(self.recipe)
        self.recipe = pop_from.pop()
        self._changed()
        return True

    def _changed(self) -> None:
        if self.recompute is not None:
            self.report = self.recompute(self)
        for listener in list(self.listeners):
            listener(self)


def _same_state(old: tuple, new: tuple) -> bool:
    """Same source object, same selection, the very same op objects (ops are immutable)."""
    return (old[0] is new[0] and old[1] == new[1] and len(old[2]) == len(new[2])
            and all(a is b for a, b in zip(old[2], new[2])))
