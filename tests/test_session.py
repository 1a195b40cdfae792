"""Session: one recipe state with undo/redo, previews that change nothing, listeners."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttui.core.base.meta import Checkpoint, Container, ReadError
from pttui.core.recipe.op import RecipeConflict
from pttui.core.recipe.recipe import AcceptMissing, Drop, Recipe, SelectContainer, StripPrefix
from pttui.core.session.session import Session
from tests.repair.test_recipe import metas, ops, sd


def ckpt(path: str = "a.pt", **containers) -> Checkpoint:
    conts = containers or {"state_dict": sd("module.fc.w", "module.fc.b", "module.bn.w"),
                           "ema": sd("fc.w", "fc.b")}
    found = [Container((name,), tensors) for name, tensors in conts.items()]
    return Checkpoint(path, "torch-zip", found, found[0].path)


class Spy:
    """A listener that records what it saw."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, session: Session) -> None:
        self.calls.append(len(session.recipe.ops))


def test_empty_session_previews_nothing():
    s = Session()
    assert s.current() == {} and s.preview(StripPrefix("x")) == {}
    assert not s.can_undo and not s.can_redo
    assert s.undo() is False and s.redo() is False


def test_apply_undo_redo():
    s = Session(ckpt())
    before = s.current()
    s.apply(StripPrefix("module."))
    assert list(s.current()) == ["fc.w", "fc.b", "bn.w"]
    assert s.can_undo and not s.can_redo
    assert s.undo() is True
    assert s.current() == before and s.recipe.ops == []
    assert s.can_redo and s.redo() is True
    assert list(s.current()) == ["fc.w", "fc.b", "bn.w"]
    assert s.redo() is False


def test_apply_after_undo_forgets_redo():
    s = Session(ckpt())
    s.apply(StripPrefix("module."))
    s.undo()
    s.apply(Drop("module.bn.*"))
    assert not s.can_redo
    assert list(s.current()) == ["module.fc.w", "module.fc.b"]


def test_preview_changes_nothing():
    s = Session(ckpt())
    spy = Spy()
    s.listeners.append(spy)
    out = s.preview(StripPrefix("module."))
    assert list(out) == ["fc.w", "fc.b", "bn.w"]
    assert s.recipe.ops == [] and not s.can_undo and spy.calls == []
    assert list(s.preview(SelectContainer(("ema",)))) == ["fc.w", "fc.b"]


def test_current_returns_a_copy():
    s = Session(ckpt())
    s.current().clear()
    assert len(s.current()) == 3


def test_conflicting_op_raises_and_leaves_state_alone():
    s = Session(ckpt(state_dict=sd("module.w", "w")))
    spy = Spy()
    s.listeners.append(spy)
    with pytest.raises(RecipeConflict):
        s.preview(StripPrefix("module."))
    with pytest.raises(RecipeConflict):
        s.apply(StripPrefix("module."))
    with pytest.raises(ReadError):
        s.apply(SelectContainer(("nope",)))
    assert s.recipe.ops == [] and not s.can_undo and spy.calls == []


def test_listeners_follow_every_change_and_see_its_analysis():
    from pttui.core.load.policy import LoadPolicy

    seen: list[int] = []
    s = Session(ckpt())
    spy = Spy()
    s.listeners.append(spy)
    s.listeners.append(lambda sess: seen.append(len(sess.analysis().current)))
    s.apply(Drop("*.bn.*"))
    s.undo()
    s.redo()
    s.set_target(None)
    s.set_policy(LoadPolicy(map_location="cpu"))
    s.refresh()
    assert spy.calls == [1, 0, 1, 1, 1, 1]
    assert seen == [2, 3, 2, 2, 2, 2]
    s.undo()
    s.undo()  # nothing left: no change, no call
    assert spy.calls[-1] == 0 and len(spy.calls) == 7


def test_the_analysis_is_computed_once_per_state_and_shared():
    import threading

    s = Session(ckpt())
    assert s.analysed() is None
    first = s.analysis()
    assert s.analysis() is first and s.analysed() is first
    assert s.analysis(with_suggestions=False) is first  # the fuller one serves both
    s.apply(Drop("*.bn.*"))
    assert s.analysed() is None  # a new state: nothing cached for it yet
    dropped = s.analysis()
    assert dropped is not first and len(dropped.current) == 2
    s.undo()
    assert len(s.analysis().current) == 3
    got: list = []
    s.apply(Drop("*.fc.b"))
    threads = [threading.Thread(target=lambda: got.append(s.analysis())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(a is got[0] for a in got)  # one computation, shared


def test_set_source_resets_recipe_only_for_another_file():
    s = Session(ckpt("a.pt"), recipe=Recipe(target="torchvision:resnet18",
                                            model_args={"num_classes": 10}))
    s.apply(StripPrefix("module."))
    s.set_source(ckpt("a.pt"))  # the same file read again
    assert s.recipe.ops == [StripPrefix("module.")] and s.can_undo
    s.set_source(ckpt("b.pt"))
    assert s.recipe.ops == [] and not s.can_undo and not s.can_redo
    assert s.recipe.source == "b.pt"
    assert s.recipe.target == "torchvision:resnet18"
    assert s.recipe.model_args == {"num_classes": 10}
    s.set_source(None)
    assert s.source is None and s.current() == {}


def test_set_target_keeps_recipe_and_stores_target_as_given():
    s = Session(ckpt())
    s.apply(StripPrefix("module."))
    target = object()
    s.set_target(target)
    assert s.target is target and s.recipe.ops == [StripPrefix("module.")] and s.can_undo


def test_select_container_replaces_the_earlier_choice():
    s = Session(ckpt())
    s.apply(SelectContainer(("ema",)))
    s.apply(Drop("fc.b"))
    s.apply(SelectContainer(("state_dict",)))
    assert s.recipe.container == ("state_dict",)
    assert list(s.current()) == ["module.fc.w", "module.fc.b", "module.bn.w"]
    s.undo()
    assert list(s.current()) == ["fc.w"]


def test_remove_and_set_recipe_are_undoable():
    s = Session(ckpt())
    s.apply(StripPrefix("module."))
    s.apply(AcceptMissing(("x",)))
    s.remove(0)
    assert s.recipe.ops == [AcceptMissing(("x",))]
    loaded = Recipe([Drop("*")], source="elsewhere.pt")
    s.set_recipe(loaded)
    assert s.current() == {}
    s.undo()
    s.undo()
    assert s.recipe.ops == [StripPrefix("module."), AcceptMissing(("x",))]


def test_current_follows_in_place_changes_to_the_selection():
    ck = ckpt()
    s = Session(ck)
    assert len(s.current()) == 3
    ck.selected = ("ema",)
    assert len(s.current()) == 2


@settings(max_examples=150)
@given(metas(min_size=1), st.lists(ops(), min_size=1, max_size=6))
def test_undo_and_redo_restore_exactly(tensors, op_list):
    s = Session(Checkpoint("f.pt", "torch-zip", [Container((), tensors)], ()))
    states = [(s.recipe.to_json(), s.current())]
    for op in op_list:
        try:
            s.apply(op)
        except ReadError:  # a conflict or a container this file lacks: refused, unchanged
            assert (s.recipe.to_json(), s.current()) == states[-1]
            continue
        states.append((s.recipe.to_json(), s.current()))
    for state in reversed(states[:-1]):
        assert s.undo()
        assert (s.recipe.to_json(), s.current()) == state
    assert not s.undo()
    for state in states[1:]:
        assert s.redo()
        assert (s.recipe.to_json(), s.current()) == state
    assert not s.redo()


def test_the_recipe_for_a_file_names_the_model_set_by_any_front_end():
    """The shell's `model` and the TUI's `:model` only set the session's target; what is
    saved or exported names it (and forgets an older one)."""
    from pttui.core.target import load_target

    s = Session(ckpt("a.pt"), recipe=Recipe(target="old:spec", model_args={"x": 1}))
    s.set_target(load_target("torchvision:squeezenet1_1", {"num_classes": 10}))
    r = s.recipe_for_file()
    assert (r.source, r.target, r.model_args) == ("a.pt", "torchvision:squeezenet1_1",
                                                   {"num_classes": 10})
    assert s.recipe.target == "old:spec"  # the session's own recipe is not changed


def test_an_allow_list_belongs_to_the_file_it_was_given_for():
    from pttui.core.load import LoadPolicy

    s = Session(ckpt("a.pt"), policy=LoadPolicy(map_location="cpu",
                                                 allow_globals=("argparse.Namespace",)))
    s.set_source(ckpt("a.pt"))  # read again: the same file keeps it
    assert s.policy.allow_globals == ("argparse.Namespace",)
    s.set_source(ckpt("b.pt"))
    assert s.policy.allow_globals == () and s.policy.map_location == "cpu"
