"""The state the TUI and the shell both show: one source, one target, one recipe.

A Session stores what it is given and keeps undo/redo of recipe states. What that state
means (the verdict, the diagnosis, the suggestions) is ``analysis()``: a value computed
from the state by ``repair.analysis.analyse`` and cached by state, here and nowhere else,
so every front shows the same numbers. Every change calls each listener, so every front
redraws from the same state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pttui.core.base.meta import Checkpoint, TensorMeta
from pttui.core.load.policy import LoadPolicy
from pttui.core.recipe.recipe import Recipe
from pttui.core.recipe.op import Op

if TYPE_CHECKING:
    from pttui.core.compare.strict import Report
    from pttui.core.repair.analysis import Analysis

Listener = Callable[["Session"], object]


class Session:
    """Source + target + load policy + recipe, with undo/redo of the recipe."""

    def __init__(self, source: Checkpoint | None = None, target: Any = None,
                 recipe: Recipe | None = None, policy: LoadPolicy | None = None) -> None:
        self.source = source
        self.target = target
        self.recipe = recipe if recipe is not None else self._fresh_recipe(source)
        self.policy: LoadPolicy = LoadPolicy() if policy is None else policy
        self.listeners: list[Listener] = []
        self._undo: list[Recipe] = []
        self._redo: list[Recipe] = []
        self._cache: tuple[tuple, dict[str, TensorMeta]] | None = None
        self._analysed: tuple[tuple, Analysis] | None = None
        self._analysing = threading.Lock()  # a worker and the `:` line ask at once

    # -- what the state means --------------------------------------------------------

    def analysis(self, with_suggestions: bool = True) -> Analysis:
        """The analysis of the state as it is now, computed once per state (the first
        caller computes, a concurrent one waits and shares it). Slow: call it from a
        worker; ``analysed()`` is the non-blocking look."""
        from pttui.core.repair.analysis import analyse

        with self._analysing:
            state = (*self._state(), self.target)
            done = self._analysed
            if done is not None and _same_state(done[0], state) and done[0][3] is state[3] \
                    and (done[1].suggestions is not None or not with_suggestions):
                return done[1]
            result = analyse(state[0], self.recipe, state[3], with_suggestions)
            self._analysed = (state, result)
            return result

    def analysed(self) -> Analysis | None:
        """The analysis of the current state if it was computed already, else None."""
        done = self._analysed
        if done is None:
            return None
        state = (*self._state(), self.target)
        return done[1] if _same_state(done[0], state) and done[0][3] is state[3] else None

    @property
    def report(self) -> Report | None:
        """What a strict load of the current key map reports (None without a target or
        when the recipe cannot run); computed if not cached, so not from the UI thread."""
        return self.analysis(with_suggestions=False).report

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

    def set_policy(self, policy: LoadPolicy) -> None:
        self.policy = policy
        self._changed()

    def refresh(self) -> None:
        """Notify the listeners again (the same state, shown afresh)."""
        self._changed()

    # -- internals -----------------------------------------------------------------

    def _forget_allow_list(self) -> None:
        """Globals allowed for one file's load belong to that file, not to the next one
        (the map_location and the other choices stay)."""
        if self.policy.allow_globals:
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
        for listener in list(self.listeners):
            listener(self)


def _same_state(old: tuple, new: tuple) -> bool:
    """Same source object, same selection, the very same op objects (ops are immutable)."""
    return (old[0] is new[0] and old[1] == new[1] and len(old[2]) == len(new[2])
            and all(a is b for a, b in zip(old[2], new[2])))
