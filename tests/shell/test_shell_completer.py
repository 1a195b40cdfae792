"""The shell's completer as a plain unit (pgcli style): feed a Document, read the words."""

from __future__ import annotations

import time

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from pttui.commands import Context, candidates, run_line
from pttui.shell.completer import CommandCompleter, ShellCompleter

from tests.helpers import SAMPLES

MODELS = ["resnet18", "resnet50", "squeezenet1_0", "squeezenet1_1", "vit_b_16"]


def words(completer, text):
    """The lines the user would get: the text before the cursor with each completion."""
    doc = Document(text, len(text))
    out = []
    for c in completer.get_completions(doc, CompleteEvent(completion_requested=True)):
        out.append(text[:len(text) + c.start_position] + c.text)
    return out


def opened(path=SAMPLES / "squeezenet1_1_dataparallel.pt") -> Context:
    ctx = Context()
    assert run_line(ctx, f"open {path}").ok
    return ctx


@pytest.fixture
def shell():
    return ShellCompleter(opened(), model_names=lambda: MODELS)


def test_commands_complete_and_fuzzy_match():
    c = ShellCompleter(Context())
    assert {"open ", "ls ", "accept-missing ", "quit ", "exit "} <= set(words(c, ""))
    assert words(c, "sugg") == ["suggest "]  # a command is followed by its arguments
    assert words(c, "acm")[0] == "accept-missing "  # a-c-m, fuzzily
    assert words(c, "xyzzy") == []


def test_options_and_their_values():
    c = ShellCompleter(Context())
    assert words(c, "tree --") == ["tree --depth", "tree --raw"]
    assert words(c, "tree --de") == ["tree --depth"]
    assert words(c, "tree -") == ["tree --depth", "tree --raw"]
    assert words(c, "tree --raw --") == ["tree --raw --depth"]  # a used flag is not offered
    assert words(c, "load --allow a.B --") .count("load --allow a.B --allow") == 1
    assert words(c, "export x.pt --format ") == ["export x.pt --format pt",
                                                 "export x.pt --format safetensors"]
    assert "load --map-location cpu" in words(c, "load --map-location ")
    assert words(c, "cast ") == [f"cast {d}" for d in ("float16", "bfloat16", "float32",
                                                         "float64")]
    assert words(c, "help exp")[0] == "help export"
    assert words(c, "recipe ") == [f"recipe {a}" for a in ("show", "save", "load", "remove")]


def test_paths(tmp_path, monkeypatch):
    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "runs").mkdir()
    (tmp_path / ".hidden").write_bytes(b"")
    c = ShellCompleter(Context())
    assert words(c, f"open {tmp_path}/") == [f"open {tmp_path}/best.pt", f"open {tmp_path}/runs/"]
    assert words(c, f"open {tmp_path}/.") == [f"open {tmp_path}/.hidden"]
    assert words(c, f"open {tmp_path}/bst") == [f"open {tmp_path}/best.pt"]  # fuzzy
    assert words(c, f"recipe save {tmp_path}/r") == [f"recipe save {tmp_path}/runs/"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert words(c, "diff ~/be") == ["diff ~/best.pt"]
    monkeypatch.chdir(tmp_path)
    assert words(c, "open ") == ["open best.pt", "open runs/"]
    assert words(c, "open nowhere/") == []


def test_keys_complete_one_dotted_level_at_a_time(shell):
    assert words(shell, "info ")[0] == "info module."
    assert words(shell, "info module.")[:2] == ["info module.features.", "info module.classifier."]
    level = words(shell, "info module.features.3.")
    assert level[:3] == ["info module.features.3.squeeze.", "info module.features.3.expand1x1.",
                         "info module.features.3.expand3x3."]
    assert words(shell, "info module.features.3.squeeze.") == [
        "info module.features.3.squeeze.weight", "info module.features.3.squeeze.bias"]


def test_keys_are_fuzzy(shell):
    assert words(shell, "info module.features.3.sq")[0] == "info module.features.3.squeeze."
    assert words(shell, "info module.features.3.squeeze.wt") == [
        "info module.features.3.squeeze.weight"]
    whole = words(shell, "stats exp3x3")  # whole keys match too, for a quick jump
    assert whole and all("expand3x3" in w for w in whole)
    assert words(shell, "ls --raw ")[0] == "ls --raw module."


def test_keys_follow_the_recipe(shell):
    run_line(shell.ctx, "rename ^module\\. ''")
    assert words(shell, "info ")[:2] == ["info features.", "info classifier."]
    meta = {c.text: c.meta for c in candidates(shell.ctx, "info features.0.")[1]}
    assert meta["features.0.weight"] == "[64, 3, 3, 3] float32"


def test_containers_complete():
    c = ShellCompleter(opened(SAMPLES / "tiny_vit_training_state.pt"))
    assert words(c, "select ") == ["select model", "select model_ema", "select optimizer.state"]
    assert words(c, "select ema") == ["select model_ema"]


def test_model_names_arrive_from_a_background_thread(shell):
    assert shell.ready.wait(5)
    assert words(shell, "model torchvision:sq") == ["model torchvision:squeezenet1_0",
                                                    "model torchvision:squeezenet1_1"]
    assert words(shell, "model ")[:2] == ["model torchvision:", "model ref:"]
    assert words(shell, f"model ref:{SAMPLES}/squeezenet1_1.p") == [
        f"model ref:{SAMPLES}/squeezenet1_1.pt"]
    assert f"model {SAMPLES}/targets.py" in words(shell, f"model {SAMPLES}/tar")


def test_a_slow_or_failing_model_list_never_blocks_the_prompt():
    def slow():
        time.sleep(3)
        return MODELS

    c = ShellCompleter(Context(), model_names=slow)
    start = time.monotonic()
    assert words(c, "model torchvision:") == []  # not ready yet: nothing, at once
    assert time.monotonic() - start < 2  # far less than the 3 s the list takes
    assert c.ready.wait(5) and len(words(c, "model torchvision:")) == len(MODELS)

    def broken():
        raise ImportError("no torchvision")

    c = ShellCompleter(Context(), model_names=broken)
    assert c.ready.wait(5) and words(c, "model torchvision:") == []


def test_suggestions_steps_and_missing_keys():
    from pttui.core.target import load_target

    ctx = opened(SAMPLES / "squeezenet1_1_finetuned_10cls.pt")
    ctx.session.set_target(load_target("torchvision:squeezenet1_1"))
    c = ShellCompleter(ctx)
    assert words(c, "apply ") == []  # nothing listed yet
    run_line(ctx, "suggest")
    assert words(c, "apply ")[0] == "apply 1"
    meta = [m.meta for m in candidates(ctx, "apply ")[1]]
    assert meta[0] == "build the model with num_classes=10"  # the diagnosis's advice
    assert meta[1].startswith("drop the mismatched head")
    run_line(ctx, "drop classifier.1")
    assert words(c, "accept-missing ") == ["accept-missing classifier.1.weight",
                                           "accept-missing classifier.1.bias"]
    assert words(c, "recipe remove ") == ["recipe remove 1"]


def test_odd_lines_never_break_completion(shell):
    for text in ("open 'unclosed", 'info "module.fe', "nosuch ", "info a b c ", "quit ",
                 "tree --depth=", "--", "'"):
        words(shell, text)  # no exception
    assert words(CommandCompleter(Context()), "info ") == []  # no file open: no keys


# -- models: factories in a file, keyword arguments ---------------------------------------

FACTORIES = '''
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("the completer ran this file")

def build(num_classes=10, *, depth: int = 4, act="relu"):
    pass

async def build_async(width):
    pass

class Net:
    def __init__(self, hidden, /, layers=2, bias=True):
        pass

def _private():
    pass

if True:
    def hidden_in_an_if():
        pass
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


def test_factories_of_a_file_come_from_parsing_it_never_importing(factory_file):
    c = ShellCompleter(Context())
    spec = f"model {factory_file}:"
    assert words(c, spec) == [f"{spec}build", f"{spec}build_async", f"{spec}Net",
                              f"{spec}_private"]  # in the file's order, private ones last
    assert words(c, spec + "nt") == [f"{spec}Net"]  # fuzzy after the colon
    meta = {x.text.rpartition(":")[2]: x.meta for x in candidates(Context(), spec)[1]}
    assert meta["build"] == "def (num_classes=10, depth=4, act='relu')"
    assert meta["Net"] == "class (layers=2, bias=True)"
    assert not (factory_file.parent / "IMPORTED").exists()
    sample = f"model {SAMPLES}/targets.py:"
    assert words(c, sample) == [f"{sample}{n}" for n in ("tiny_vit", "tiny_gpt",
                                                         "gray_squeezenet", "_Block")]
    for broken in ("nope.py:", f"{factory_file.parent}:"):  # nothing there: nothing offered
        assert words(c, f"model {broken}") == []
    (factory_file.parent / "bad.py").write_text("def (:\n")
    assert words(c, f"model {factory_file.parent}/bad.py:") == []


def test_keywords_of_a_factory_in_a_file(factory_file):
    c = ShellCompleter(Context())
    line = f"model {factory_file}:build "
    assert words(c, line) == [f"{line}num_classes=", f"{line}depth=", f"{line}act="]
    assert words(c, line + "dep") == [f"{line}depth="]
    assert words(c, line + "depth=3 ") == [f"{line}depth=3 num_classes=", f"{line}depth=3 act="]
    assert words(c, line + "depth=") == []  # a value is free text
    assert words(c, f"model {factory_file}:Net ") == [f"model {factory_file}:Net layers=",
                                                       f"model {factory_file}:Net bias="]
    assert {x.meta for x in candidates(Context(), line)[1]} == {
        "default 10", "default 4", "default 'relu'"}
    assert words(c, f"model ref:{SAMPLES}/squeezenet1_1.pt ") == []
    assert not (factory_file.parent / "IMPORTED").exists()


def test_torchvision_keywords_come_from_the_builder_in_the_background():
    from pttui.core.target import torchvision_keywords, torchvision_models

    c = ShellCompleter(Context(), torchvision_models, torchvision_keywords)
    assert c.ready.wait(60)
    line = "model torchvision:squeezenet1_1 "
    got = words(c, line)
    assert f"{line}num_classes=" in got and f"{line}dropout=" in got
    assert not any(w.endswith(("weights=", "progress=", "weights_backbone=")) for w in got)
    meta = {x.text: x.meta for x in candidates(Context(), line, c.catalog)[1]}
    assert meta["num_classes="] == "default 1000"
    assert f"{line}num_classes=10 dropout=" in words(c, line + "num_classes=10 ")
    assert f"{line}num_classes=10 num_classes=" not in words(c, line + "num_classes=10 ")
    assert "model torchvision:resnet18 zero_init_residual=" in words(c, "model torchvision:"
                                                                       "resnet18 zero")
    assert words(c, "model torchvision:no_such_model ") == []


def test_keywords_wait_for_the_catalog_and_never_block():
    def slow_names():
        time.sleep(3)
        return MODELS

    c = ShellCompleter(Context(), slow_names, lambda name: [("num_classes", "default 1000")])
    start = time.monotonic()
    assert words(c, "model torchvision:resnet18 ") == []  # not ready: nothing, at once
    assert time.monotonic() - start < 2
    assert c.ready.wait(5)
    assert words(c, "model torchvision:resnet18 ") == ["model torchvision:resnet18 num_classes="]


def test_complete_line_for_the_tui():
    """The TUI's `:` line has no menu: it takes whole lines, prefix matches only, from the
    same candidates (and the same catalog) the shell uses."""
    from pttui.commands import ModelCatalog, complete_line

    ctx = opened()
    assert complete_line(ctx, "sugg") == ["suggest"]
    got = complete_line(ctx, "info module.features.3.sq")  # the level first, then whole keys
    assert got == ["info module.features.3.squeeze.", "info module.features.3.squeeze.weight",
                   "info module.features.3.squeeze.bias"]
    assert complete_line(ctx, "tree --d") == ["tree --depth"]
    catalog = ModelCatalog.of(MODELS, {"resnet18": [("num_classes", "default 1000")]})
    assert complete_line(ctx, "model torchvision:squeezenet1_", catalog) == [
        "model torchvision:squeezenet1_0", "model torchvision:squeezenet1_1"]
    assert complete_line(ctx, "model torchvision:resnet18 n", catalog) == [
        "model torchvision:resnet18 num_classes="]
    assert complete_line(ctx, "suggest") == []  # complete already: nothing to add
    for line in complete_line(ctx, "info module.f") + complete_line(ctx, "open "):
        assert line.startswith(("info module.f", "open "))
