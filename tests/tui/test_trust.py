"""What the TUI says can be trusted: a malicious file never looks mild, weights for
another model get no advice that cannot help, a fit reached by dropping most of a file
says so, the stored device survives a load, and the diagnosis shows at 80x24."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from tests.helpers import SAMPLES
from tests.tui.conftest import make_app, screen_text, settle, until

pytestmark = pytest.mark.slow


def _main(app):
    from pttui.tui.screens.main import MainScreen

    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def _shown(app) -> str:
    return "\n".join(screen_text(app))


def _report(app) -> str:
    return str(_main(app).query_one("#report-body").render())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_malicious_file_opens_under_a_banner_naming_the_call(tmp_path, size):
    shutil.copy(SAMPLES / "malicious.pt", tmp_path / "malicious.pt")
    app = make_app(tmp_path / "malicious.pt")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        lines = screen_text(app)
        assert lines[0].strip().startswith("DANGER: this file carries code a full torch.load "
                                           "runs")
        assert lines[1].strip().startswith("runs builtins.exec('import os, tempfile")
        assert "DANGER" in _report(app) and "runs builtins.exec(" in _report(app)
        # the next file has no banner, and the panes take its rows back
        shutil.copy(SAMPLES / "squeezenet1_1.pt", tmp_path / "squeezenet1_1.pt")
        await pilot.press("f5")
        await settle(app, pilot)
        main = _main(app)
        main.open_file(str(tmp_path / "squeezenet1_1.pt"))
        await settle(app, pilot)
        assert not main.query_one("#danger").display
        assert "DANGER" not in _shown(app)


async def test_at_80x24_the_verdict_and_diagnosis_show_without_a_key(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model="torchvision:squeezenet1_1")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        shown = _shown(app)
        assert "Report" in shown and "Files" in shown  # both, side by side with the keys
        assert "strict load: FAILS (52 missing, 52 unexpected)" in shown
        assert "`module.` (nn.DataParallel / DDP)" in shown
        await pilot.press("f4")  # hides it; the keys take the whole column
        await settle(app, pilot)
        assert "strict load: FAILS" not in _shown(app)


@pytest.fixture
def squeeze_file(tmp_path):
    path = tmp_path / "squeezenet_weights.pt"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
    return path


async def test_weights_for_another_model_say_so_and_offer_only_another_model(squeeze_file):
    app = make_app(squeeze_file, model="torchvision:resnet18")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        report = _report(app)
        assert "these weights are not for torchvision resnet18" in report
        assert "suggestions (f" not in report and "-> " not in report  # no rename offered
        assert main.analysis.suggestions == []
        await pilot.press("f")
        await until(pilot, lambda: type(app.screen).__name__ == "WizardScreen")
        await settle(app, pilot)
        wizard = app.screen
        assert wizard.step.stage == "model"
        assert "not for this model" in _shown(app) and "Choose a model (a)" in _shown(app)
        assert not wizard.query_one("#skip").display  # nothing else to offer
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "TargetScreen")


async def test_dropping_a_wrong_variant_into_shape_keeps_the_warning(tmp_path):
    from pttui.core.recipe import Drop

    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    app = make_app(path, model="torchvision:resnet18")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        s = main.session
        s.set_recipe(s.recipe.with_op(Drop(r"^(layer1\.2|layer2\.[23]|layer3\.[2-5]|layer4\.2)\.",
                                           "regex")))
        await settle(app, pilot)
        report = _report(app)
        assert "strict load: OK" in report
        assert "uses 54% of the checkpoint's parameters" in report and "96 keys dropped" in report
        assert "another variant of the model" in report
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
        await settle(app, pilot)
        shown = _shown(app)
        assert "96 keys dropped" in shown and "another variant" in shown
        await pilot.press("escape")


async def test_the_stored_device_stays_in_the_report_after_a_mapped_load(folder, no_cuda):
    app = make_app(folder / "tiny_vit_cuda.pt", map_location="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert "saved from cuda:0 and this machine has no CUDA: a plain torch.load fails" \
            in _report(app)
        await pilot.press("l")
        await settle(app, pilot)
        assert app.screen.result.ok
        await pilot.press("escape")
        await settle(app, pilot)
        report = _report(app)
        assert "loaded in" in report
        assert "your own script: saved from cuda:0" in report
        assert "map_location='cpu'" in report


async def test_a_load_option_typed_on_the_line_is_shown_as_the_new_default(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press(":")
        await pilot.press(*"load --map-location meta", "enter")
        await settle(app, pilot)
        await until(pilot, lambda: main.session.policy.map_location == "meta")
        await settle(app, pilot)
        assert "map_location: meta" in str(main.query_one("#devices").render())
        assert "this session's loads now use map_location=meta" in _shown(app)


@pytest.mark.parametrize("name, advice, code", [
    ("tiny_vit_torchscript.pt", "torch.jit.load", "torch.jit.load("),
    ("truncated.pt", "copy or download the file again", None)])
async def test_load_fixes_that_cannot_run_are_advice_not_choices(folder, name, advice, code):
    app = make_app(folder / name)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("l")
        await settle(app, pilot)
        load = app.screen
        assert load.result is not None and not load.result.ok
        fixes = load.query_one("#load-fixes")
        offered = [str(o.prompt) for o in fixes.options]
        assert not any(advice in o for o in offered)  # Enter on it would do nothing
        text = str(load.query_one("#load-result").render())
        assert "what to do:" in text and advice in text
        if code:
            assert "in your own script:" in text and code in text
        await pilot.press("escape")


async def test_q_asks_before_an_unexported_recipe_is_lost(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model="torchvision:squeezenet1_1")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        from pttui.core.recipe.recipe import StripPrefix

        main = _main(app)
        main.session.set_recipe(main.session.recipe.with_op(StripPrefix("module.")))
        await settle(app, pilot)
        await pilot.press("2", "q")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        assert "Quit without exporting?" in _shown(app) and "1 step" in _shown(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main)
        assert app.is_running and main.session.recipe.ops


async def test_the_report_lists_what_the_file_holds_beside_the_weights(tmp_path):
    shutil.copy(SAMPLES / "tiny_vit_lightning.ckpt", tmp_path / "run.ckpt")
    app = make_app(tmp_path / "run.ckpt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        report = _report(app)
        assert "epoch = 3" in report and "global_step = 1200" in report
        assert "hparams_name" in report


async def test_a_dropped_head_is_not_called_headless_and_the_class_count_is_offered(folder):
    from pttui.core.recipe import AcceptMissing, Drop

    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model="torchvision:squeezenet1_1")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert "1. build the model with num_classes=10" in _report(app)
        s = _main(app).session
        s.set_recipe(s.recipe.with_op(Drop("classifier.1.*")).with_op(
            AcceptMissing(("classifier.1.weight", "classifier.1.bias"))))
        await settle(app, pilot)
        report = _report(app)
        assert "loads with strict=False" in report
        assert "headless" not in report and "has no classifier" not in report
        assert "the recipe drops the checkpoint's own classifier" in report


async def test_model_picker_search_down_enter_builds_and_drops_the_old_models_args(folder):
    from pttui.tui.screens.target import TargetScreen

    app = make_app(folder / "squeezenet1_1.pt", model="torchvision:squeezenet1_1",
                   model_args={"num_classes": 1000})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, TargetScreen))
        picker = app.screen
        assert picker.query_one("#args").value == "num_classes=1000"
        picker.query_one("#tv-search").focus()
        await pilot.press(*"resnet18")  # quantized_resnet18, resnet18
        await until(pilot, lambda: picker.query_one("#tv-list").option_count == 2)
        await pilot.press("down", "down", "enter")  # to the list, the second; built at once
        await until(pilot, lambda: app.screen is main)
        await settle(app, pilot)
        assert main.session.target.spec == "torchvision:resnet18"
        assert dict(main.session.target.args or {}) == {}  # squeezenet's args stayed behind


async def test_model_arguments_keep_their_quotes(folder, monkeypatch):
    from pttui.tui.screens.target import TargetScreen

    seen = {}
    monkeypatch.setattr(TargetScreen, "_build", lambda self, spec, args: seen.update(got=args))
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, TargetScreen))
        picker = app.screen
        picker.query_one("#spec").value = "torchvision:resnet18"
        picker.query_one("#args").value = "norm='bn' depth=3"
        picker.build()
        assert seen["got"] == {"norm": "bn", "depth": 3}
        assert "norm" not in seen["got"].bare  # typed as a literal, read as one


async def test_a_model_kept_for_the_next_file_says_so(folder):
    app = make_app(folder / "squeezenet1_1.pt", model="torchvision:squeezenet1_1")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        assert "chosen for" not in _report(app)
        main.open_file(str(folder / "squeezenet1_1_compiled.pt"))
        await settle(app, pilot)
        assert "(chosen for squeezenet1_1.pt: m changes it)" in _report(app)


async def test_the_files_cursor_starts_on_the_first_file(folder):
    app = make_app(folder)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        files = _main(app).query_one("#files-list")
        assert files.highlighted == 1  # after ../
        await pilot.press("down")
        assert files.highlighted == 2


async def test_key_status_counts_say_what_they_count(tmp_path):
    sd = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
          if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "r18.pt")
    app = make_app(tmp_path / "r18.pt", model="torchvision:resnet18")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        status = str(_main(app).query_one("#key-status").render())
        assert "20 filled by torch" in status and " auto" not in status


async def test_tab_completes_even_before_the_inline_suggestion_arrives(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press(":", *"model torch", "tab", *"resn")  # no pause: as fast typing
        box = _main(app).query_one("#command-line")
        assert box.value == "model torchvision:resn"


async def test_exporting_again_proposes_a_free_name_and_speaks_of_the_checkbox(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model="torchvision:squeezenet1_1")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        out = folder / "squeezenet1_1_dataparallel.fixed.pt"
        out.write_bytes(b"an earlier export")
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
        field = app.screen.query_one("#out")
        assert field.value.endswith("squeezenet1_1_dataparallel.fixed-2.pt")
        field.value = str(out)  # the taken name, typed on purpose
        app.screen.query_one("#go").press()
        status = app.screen.query_one("#export-status")
        await until(pilot, lambda: "not replacing it" in str(status.render()))
        said = str(status.render())  # the pane's text: where it wraps depends on the path
        assert "tick 'overwrite existing files'" in said and "--force" not in said
        assert out.read_bytes() == b"an earlier export"
        await pilot.press("escape")


async def test_a_previous_files_toasts_do_not_cover_the_next(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        app.notify("about squeezenet1_1.pt", timeout=30)
        main.open_file(str(folder / "squeezenet1_1_compiled.pt"))
        await settle(app, pilot)
        assert not any("about squeezenet1_1.pt" in n.message for n in app._notifications)


async def test_a_cancelled_command_says_so_once(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press(":", *"load", "enter")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await settle(app, pilot)
        said = [n.message for n in app._notifications if "interrupted" in n.message]
        assert said == ["load: interrupted; nothing was changed"]
