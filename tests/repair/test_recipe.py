"""Recipe ops on metadata: renames, drops, casts, conflicts, provenance, JSON, files."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttui.core.base.meta import Checkpoint, Container, ReadError, TensorMeta
from pttui.core.recipe.op import RecipeConflict
from pttui.core.recipe.recipe import (AcceptMissing, AddPrefix, Cast, Drop, KeyMap, Recipe,
                                      RegexRename, SelectContainer, StripPrefix, op_from_json)


# -- strategies (test_session and test_recipe_render import these) -------------------

SEGMENTS = ["module", "encoder", "layer", "layers", "0", "1", "weight", "bias", "fc",
            "bn", "num_batches_tracked", "_orig_mod", "gamma", "beta"]
DTYPES = ["float32", "float16", "bfloat16", "int64", "bool"]

keys = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(".".join)
prefixes = st.sampled_from(["module.", "encoder.", "_orig_mod.", "m", "layer"])
globs = st.sampled_from(["*", "*.weight", "module.*", "bn.num_batches_tracked", "*.[01].*"])
regexes = st.sampled_from([r"^module\.", r"weight$", r"layer\.(\d+)", r"\.0\.", r"bias"])
renames = st.sampled_from([(r"^module\.", ""), (r"layer\.(\d+)", r"layers.\1"),
                           (r"(?P<n>\w+)\.gamma$", r"\g<n>.weight"), (r"beta", "bias"),
                           (r"\.(\d)\.", r".block\1."), (r"^", "x.")])
# strings that must survive JSON: any text, used where any text is valid
any_text = st.text(min_size=1, max_size=12)


@st.composite
def metas(draw, min_size: int = 0, max_size: int = 12) -> dict[str, TensorMeta]:
    names = draw(st.lists(keys, min_size=min_size, max_size=max_size, unique=True))
    return {k: TensorMeta(k, (2, 3), draw(st.sampled_from(DTYPES)), "cpu") for k in names}


def _mapping(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(text, text, max_size=4)


def ops(text: st.SearchStrategy[str] = keys) -> st.SearchStrategy:
    """Any op; ``text`` feeds the free-form strings (keys, prefixes)."""
    return st.one_of(
        st.lists(text, max_size=2).map(lambda p: SelectContainer(tuple(p))),
        st.one_of(prefixes, text).map(StripPrefix),
        st.builds(AddPrefix, st.one_of(prefixes, text), st.none() | regexes),
        st.builds(lambda rr, n: RegexRename(*rr, count=n), renames, st.integers(0, 2)),
        st.builds(lambda t: RegexRename(re.escape(t), t.replace("\\", "\\\\")), text),
        _mapping(text).map(KeyMap),
        st.builds(Drop, globs, st.just("glob")) | st.builds(Drop, regexes, st.just("regex")),
        st.builds(Cast, st.sampled_from(["float16", "bfloat16", "half", "torch.float32"]),
                  globs, st.just("glob")),
        st.lists(text, max_size=3).map(lambda k: AcceptMissing(tuple(k))),
    )


rename_ops = st.one_of(
    prefixes.map(StripPrefix),
    st.builds(AddPrefix, prefixes, st.none() | regexes),
    st.builds(lambda rr: RegexRename(*rr), renames),
    _mapping(keys).map(KeyMap),
)


def tm(key: str, dtype: str = "float32", shape=(2, 2)) -> TensorMeta:
    return TensorMeta(key, shape, dtype, "cpu")


def sd(*names: str, dtype: str = "float32") -> dict[str, TensorMeta]:
    return {k: tm(k, dtype) for k in names}


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text
    return text


# -- each op -------------------------------------------------------------------------

def test_strip_prefix_only_touches_prefixed_keys_and_keeps_order():
    out = StripPrefix("module.").apply(sd("module.b", "a.module.x", "module.a"))
    assert list(out) == ["b", "a.module.x", "a"]
    assert out["b"].key == "module.b"  # provenance: the source key stays on the meta


def test_add_prefix_all_or_only_matching():
    assert list(AddPrefix("backbone.").apply(sd("a", "b"))) == ["backbone.a", "backbone.b"]
    out = AddPrefix("encoder.", only=r"^layer").apply(sd("layer.0.w", "head.w"))
    assert list(out) == ["encoder.layer.0.w", "head.w"]


def test_regex_rename_back_references():
    out = RegexRename(r"layer(\d+)\.", r"layers.\1.").apply(sd("layer3.w", "fc.w"))
    assert list(out) == ["layers.3.w", "fc.w"]
    out = RegexRename(r"(?P<m>\w+)\.gamma$", r"\g<m>.weight").apply(sd("ln.gamma"))
    assert list(out) == ["ln.weight"]
    assert list(RegexRename("a", "b", count=1).apply(sd("aaa"))) == ["baa"]


@pytest.mark.parametrize("args", [("(",), ("a", r"\2"), ("a", r"\g<x"), ("a", "b", -1)])
def test_regex_rename_rejects_bad_regex_at_construction(args):
    with pytest.raises(ReadError) as err:
        RegexRename(*args) if len(args) > 1 else RegexRename(args[0], "")
    one_line(err.value)


def test_key_map_renames_at_once_so_swaps_work():
    out = KeyMap({"q.w": "k.w", "k.w": "q.w", "absent": "x"}).apply(sd("q.w", "k.w", "v.w"))
    assert {k: m.key for k, m in out.items()} == {"k.w": "q.w", "q.w": "k.w", "v.w": "v.w"}


def test_drop_glob_matches_whole_key_and_regex_searches():
    keys_ = sd("fc.weight", "fc.bias", "backbone.fc.weight")
    assert list(Drop("fc.*").apply(keys_)) == ["backbone.fc.weight"]
    assert list(Drop(r"fc\.weight$", kind="regex").apply(keys_)) == ["fc.bias"]
    with pytest.raises(ReadError):
        Drop("x", kind="shell")


def test_cast_touches_floating_tensors_only_unless_named_exactly():
    src = {"w": tm("w"), "bn.num_batches_tracked": tm("bn.num_batches_tracked", "int64"),
           "mask": tm("mask", "bool")}
    out = Cast("half").apply(src)
    assert {k: m.dtype for k, m in out.items()} == {
        "w": "float16", "bn.num_batches_tracked": "int64", "mask": "bool"}
    assert out["w"].key == "w" and out["w"].nbytes == src["w"].nbytes // 2
    named = Cast("float32", "bn.num_batches_tracked").apply(src)
    assert named["bn.num_batches_tracked"].dtype == "float32"
    named = Cast("float32", r"^bn\.num_batches_tracked$", kind="regex").apply(src)
    assert named["bn.num_batches_tracked"].dtype == "float32"
    assert Cast("float32", r"num_batches", kind="regex").apply(src) == src
    with pytest.raises(ReadError) as err:
        Cast("float17")
    assert "float17" in one_line(err.value)


def test_marker_ops_are_identity():
    src = sd("a", "b")
    assert SelectContainer(("state_dict",)).apply(src) == src
    assert AcceptMissing(("fc.weight",)).apply(src) == src


def test_describe_is_one_human_line():
    assert StripPrefix("module.").describe() == "strip prefix `module.`"
    assert SelectContainer(("state_dict",)).describe() == "use container `state_dict`"
    assert SelectContainer(()).describe() == "use container (root)"
    for op in (AddPrefix("a.", only="x"), RegexRename("a\n", "b"), KeyMap({"a": "b"}),
               KeyMap({"a": "b", "c": "d"}), Drop("x*"), Cast("bfloat16"),
               AcceptMissing(tuple("abcde"))):
        assert "\n" not in op.describe() and op.describe()


# -- conflicts ----------------------------------------------------------------------

def test_rename_onto_an_existing_key_names_both_and_never_overwrites():
    with pytest.raises(RecipeConflict) as err:
        StripPrefix("module.").apply(sd("module.fc.w", "fc.w"))
    text = one_line(err.value)
    assert "`module.fc.w`" in text and "`fc.w`" in text
    assert isinstance(err.value, ReadError)
    with pytest.raises(RecipeConflict):
        KeyMap({"a": "c", "b": "c"}).apply(sd("a", "b"))


@given(metas(min_size=1), st.dictionaries(keys, keys, max_size=6))
def test_key_map_collisions_always_raise(src, mapping):
    new_names = [mapping.get(k, k) for k in src]
    if len(set(new_names)) < len(new_names):
        with pytest.raises(RecipeConflict):
            KeyMap(mapping).apply(src)
    else:
        assert list(KeyMap(mapping).apply(src)) == new_names


@given(metas(min_size=1), st.sampled_from([(r"\.\d+\.", "."), (r"^\w+\.", ""), (r"s$", ""),
                                           (r"(weight|bias)", "p"), (r"^", "")]))
def test_regex_rename_collisions_always_raise(src, rr):
    new_names = [re.sub(rr[0], rr[1], k) for k in src]
    op = RegexRename(*rr)
    if len(set(new_names)) < len(new_names):
        with pytest.raises(RecipeConflict):
            op.apply(src)
    else:
        assert list(op.apply(src)) == new_names


@settings(max_examples=300)
@given(metas(), st.lists(ops(), max_size=6))
def test_apply_preserves_provenance(src, op_list):
    try:
        out = Recipe(op_list).apply(src)
    except RecipeConflict:
        return
    sources = [m.key for m in out.values()]
    assert set(sources) <= set(src)
    assert len(sources) == len(set(sources))  # no source tensor written twice
    for meta in out.values():  # only the dtype may change
        assert meta._replace(dtype=src[meta.key].dtype) == src[meta.key]


# -- the recipe ---------------------------------------------------------------------

def test_recipe_runs_ops_in_order_and_reports_container_and_accepted():
    r = Recipe([SelectContainer(("model",)), StripPrefix("module."), AddPrefix("net."),
                AcceptMissing(("a", "b")), AcceptMissing(("b", "c")), SelectContainer(("x",))])
    assert list(r.apply(sd("module.w"))) == ["net.w"]
    assert r.container == ("model",)
    assert r.accepted_missing == ("a", "b", "c")
    assert Recipe().container is None and Recipe().accepted_missing == ()


def test_with_op_keeps_one_container_choice_first():
    r = Recipe().with_op(StripPrefix("m.")).with_op(SelectContainer(("a",)))
    assert r.ops == [SelectContainer(("a",)), StripPrefix("m.")]
    r2 = r.with_op(SelectContainer(("b",)))
    assert r2.ops == [SelectContainer(("b",)), StripPrefix("m.")]
    assert r.ops[0] == SelectContainer(("a",))  # the old recipe is untouched


def _ckpt() -> Checkpoint:
    return Checkpoint("f.pt", "torch-zip",
                      [Container(("state_dict",), sd("module.w")), Container(("ema",), sd("w"))],
                      ("state_dict",))


def test_select_uses_recipe_container_or_the_readers_pick():
    ck = _ckpt()
    assert list(Recipe([StripPrefix("module.")]).apply_to(ck)) == ["w"]
    assert list(Recipe([SelectContainer(("ema",))]).apply_to(ck)) == ["w"]
    with pytest.raises(ReadError) as err:
        Recipe([SelectContainer(("nope",))]).select(ck)
    assert "`nope`" in one_line(err.value) and "`ema`" in str(err.value)


# -- JSON and files -----------------------------------------------------------------

def test_json_shape():
    r = Recipe([StripPrefix("module."), Cast("half", "fc.*")], source="a.pt",
               target="torchvision:resnet18", model_args={"num_classes": 10})
    data = r.to_json()
    assert data["pttui_recipe"] == 1 and data["model_args"] == {"num_classes": 10}
    assert data["ops"] == [{"op": "strip_prefix", "prefix": "module."},
                           {"op": "cast", "dtype": "float16", "pattern": "fc.*", "kind": "glob"}]
    assert json.loads(json.dumps(data)) == data


@settings(max_examples=200)
@given(st.lists(ops(st.one_of(keys, any_text)), max_size=8),
       st.none() | any_text, st.none() | any_text,
       st.dictionaries(any_text, st.integers() | any_text | st.booleans(), max_size=3))
def test_recipe_json_round_trips(op_list, source, target, args):
    r = Recipe(op_list, source=source, target=target, model_args=args)
    again = Recipe.from_json(json.loads(json.dumps(r.to_json())))
    assert again == r
    assert again.to_json() == r.to_json()
    for op in op_list:
        assert op_from_json(op.to_json()) == op


@pytest.mark.parametrize("data,needle", [
    ({"ops": []}, "not a pttui recipe"),
    ([], "not a pttui recipe"),
    ({"pttui_recipe": 3, "ops": []}, "version 3"),
    ({"pttui_recipe": 1, "ops": [{"op": "transmogrify"}]}, "transmogrify"),
    ({"pttui_recipe": 1, "ops": [{"op": "strip_prefix"}]}, "strip_prefix"),
    ({"pttui_recipe": 1, "ops": [{"op": "strip_prefix", "prefix": 3}]}, "strip_prefix"),
    ({"pttui_recipe": 1, "ops": [{"op": "drop", "pattern": "(", "kind": "regex"}]}, "regex"),
    ({"pttui_recipe": 1, "ops": [{"op": "key_map", "mapping": ["a"]}]}, "key_map"),
    ({"pttui_recipe": 1, "ops": [{"op": "regex_rename", "pattern": "a", "replacement": "b",
                                  "count": "1"}]}, "count"),
    ({"pttui_recipe": 1, "ops": {}}, "ops"),
    ({"pttui_recipe": 1, "ops": [], "source": 3}, "source"),
])
def test_bad_recipes_are_one_line_errors(data, needle):
    with pytest.raises(ReadError) as err:
        Recipe.from_json(data)
    assert needle in one_line(err.value)


def test_save_is_atomic_and_load_round_trips(tmp_path):
    path = tmp_path / "fix.json"
    r = Recipe([StripPrefix("module."), KeyMap({"a": "b"})], source="x.pt")
    r.save(path)
    path.write_text(path.read_text())  # a plain JSON file a user could edit
    assert Recipe.load(path) == r
    Recipe([Drop("*")]).save(str(path))  # overwrite in place
    assert Recipe.load(path).ops == [Drop("*")]
    assert os.listdir(tmp_path) == ["fix.json"]  # no temp files left behind


def test_save_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*_a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ReadError) as err:
        Recipe().save(tmp_path / "r.json")
    assert "No space left" in one_line(err.value)
    assert os.listdir(tmp_path) == []


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ReadError) as err:
        Recipe.load(tmp_path / "missing.json")
    assert "no such recipe file" in one_line(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReadError) as err:
        Recipe.load(bad)
    assert "not valid JSON" in one_line(err.value)
    bad.write_text('{"pttui_recipe": 9}')
    with pytest.raises(ReadError) as err:
        Recipe.load(bad)
    assert str(bad) in one_line(err.value) and "version 9" in str(err.value)
    with pytest.raises(ReadError):
        Recipe.load(tmp_path)  # a directory


def test_saved_recipe_is_an_ordinary_file_and_leaves_no_temp(tmp_path):
    mask = os.umask(0o022)
    try:
        Recipe([StripPrefix("module.")]).save(tmp_path / "r.json")
    finally:
        os.umask(mask)
    assert os.listdir(tmp_path) == ["r.json"]
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o644


# -- refused arguments: casts that would destroy weights, renames that garble every key ------

@pytest.mark.parametrize("dtype,needle", [
    ("int8", "not a floating dtype"), ("torch.int64", "not a floating dtype"),
    ("uint8", "not a floating dtype"), ("bool", "not a floating dtype"),
    ("complex64", "does not cast to complex64"), ("float8_e4m3fn", "does not cast to"),
    ("float17", "unknown dtype"),
])
def test_cast_only_to_floating_dtypes(dtype, needle):
    with pytest.raises(ReadError) as err:
        Cast(dtype)
    text = one_line(err.value)
    assert text.startswith("cast: ") and needle in text
    assert "float16, bfloat16, float32, float64" in text


def test_cast_to_int8_would_zero_real_weights_so_it_is_refused_in_json_too(tmp_path):
    """Why the refusal: a float -> int8 cast truncates the weights of a real model."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    w = torchvision.models.resnet18(weights=None).state_dict()["fc.weight"]
    assert (w.to(torch.int8) == 0).float().mean() > 0.99  # what `cast int8` would write
    for name in ("float16", "bfloat16", "half", "torch.float64"):  # what it may write
        kept = w.to(getattr(torch, Cast(name).dtype)).float()
        assert torch.allclose(kept, w, rtol=1e-2, atol=1e-6) and (kept == 0).float().mean() < 1e-3
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"pttui_recipe": 1, "ops": [{"op": "cast", "dtype": "int8"}]}))
    with pytest.raises(ReadError) as err:
        Recipe.load(path)
    assert "int8 is not a floating dtype" in one_line(err.value)


@pytest.mark.parametrize("pattern", ["", "x*", "(a|)", "(?:)", "\\.?", "(?:layer)*"])
def test_rename_refuses_patterns_that_match_between_every_character(pattern):
    assert re.sub(pattern, "x", "module.weight") != "module.weight"  # it would garble
    with pytest.raises(ReadError) as err:
        RegexRename(pattern, "x")
    text = one_line(err.value)
    assert text.startswith("rename: ") and "regex_rename" not in text


@pytest.mark.parametrize("pattern,repl,key,want", [
    ("^", "model.", "fc.weight", "model.fc.weight"),  # anchored: a prefix
    ("$", ".0", "fc.weight", "fc.weight.0"),  # anchored: a suffix
    (r"(?=\.weight$)", "_q", "fc.weight", "fc_q.weight"),  # a lookahead: one place
    (r"\.?gamma$", ".weight", "ln.gamma", "ln.weight"),  # can be empty, never is here
])
def test_rename_keeps_patterns_that_insert_at_chosen_places(pattern, repl, key, want):
    assert list(RegexRename(pattern, repl).apply(sd(key))) == [want]


@pytest.mark.parametrize("args,needle", [
    (("(", "x"), "rename: invalid regex `(`: missing ), unterminated subpattern"),
    (("a", r"\2"), "rename: bad replacement"),
    (("a", "b", -1), "rename: count must be"),
])
def test_rename_errors_use_the_command_name(args, needle):
    with pytest.raises(ReadError) as err:
        RegexRename(*args)
    assert one_line(err.value).startswith(needle)


def test_shell_words_for_refused_steps():
    """What a shell user sees for `rename '' x`, `rename '(' x` and `cast int8`."""
    from pttui.commands import Context, run_line

    from tests.helpers import SAMPLES

    ctx = Context()
    assert run_line(ctx, f"open {SAMPLES / 'squeezenet1_1.pt'}").status == "ok"
    for line, needle in [("rename '' x", "rename: the pattern is empty"),
                         ("rename 'x*' y", "matches the empty string between characters"),
                         ("rename '(' x", "rename: invalid regex `(`"),
                         ("cast int8", "cast: int8 is not a floating dtype")]:
        r = run_line(ctx, line)
        assert r.status == "error" and needle in r.title and "\n" not in r.title, r.title
        assert "regex_rename" not in r.title
    assert ctx.session.recipe.ops == []
