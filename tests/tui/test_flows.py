"""Each flow driven like a person would: keys in, state and files out (Pilot)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.tui.conftest import SQUEEZE, make_app, settle

pytestmark = pytest.mark.slow


def _main(app):
    from pttui.tui.screens.main import MainScreen

    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def test_first_paint_comes_before_torch(folder):
    """In a fresh interpreter: the screen paints with torch not yet imported."""
    import subprocess
    import sys

    code = ("import asyncio, sys\n"
            "from tests.tui.conftest import make_app, settle\n"
            "async def main():\n"
            f"    app = make_app({str(folder / 'squeezenet1_1.pt')!r}, model='{SQUEEZE}')\n"
            "    async with app.run_test(size=(80, 24)) as pilot:\n"
            "        await settle(app, pilot)\n"
            "        main = app.screen_stack[-1]\n"
            "        print(main.first_paint[1], 'torch' in sys.modules)\n"
            "asyncio.run(main())\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, timeout=180)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


async def test_open_folder_choose_file_and_browse_keys(folder):
    app = make_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        files = main.query_one("#files-list")
        names = [e.name for e in main.query_one("#files").entries]
        assert "squeezenet1_1_dataparallel.pt" in names
        files.focus()
        files.highlighted = 1 + names.index("squeezenet1_1_dataparallel.pt")  # after ../
        await pilot.press("enter")
        await settle(app, pilot)
        assert main.session.source.path.endswith("squeezenet1_1_dataparallel.pt")
        tree = main.query_one("#key-tree")
        assert app.focused is tree
        await pilot.press("right")  # expand `module`
        await settle(app, pilot)
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert labels[0].startswith("features") and labels[1].startswith("classifier.1")
        await pilot.press("slash", *"expand3x3.bias")
        await settle(app, pilot)
        pane = main.query_one("#keys")
        assert len(pane.matched) == 8
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert str(tree.root.children[0].label).startswith("module.features  8 keys")
        assert labels[0].startswith("3.expand3x3.bias  [64] float32")  # folded to the key
        await pilot.press("enter", "down")
        row = pane.selected_row()
        assert row.is_leaf and row.key == "module.features.3.expand3x3.bias"
        await pilot.press("enter")  # details, then value statistics in a worker
        await settle(app, pilot)
        assert type(app.screen).__name__ == "DetailsScreen"
        await pilot.press("s")
        await settle(app, pilot)
        assert "NaN 0" in str(app.screen.query_one("#stats").render())
        await pilot.press("escape")


async def test_target_picker_and_guided_fixup_dataparallel(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("m")
        await settle(app, pilot)
        await pilot.press(*"squeezenet", "enter", "down", "enter")  # the list: 1_0, 1_1
        assert app.screen.query_one("#spec").value == SQUEEZE
        await pilot.press("enter")
        await settle(app, pilot)
        assert main.session.target.spec == SQUEEZE
        assert main.session.report.coverage_keys == (0, 52)
        await pilot.press("f")
        await settle(app, pilot)
        wizard = app.screen
        assert wizard.step.stage == "prefix" and "module." in wizard.step.title
        assert wizard.step.after.coverage_keys == (52, 52)
        await pilot.press("a")
        await settle(app, pilot)
        assert wizard.step.stage == "done"
        assert main.session.report.strict_ok
        await pilot.press("u")  # undo inside the wizard takes the step back
        await settle(app, pilot)
        assert wizard.step.stage == "prefix" and not main.session.recipe.ops
        await pilot.press("e")  # edit the step as a regex, with a live preview
        await settle(app, pilot)
        editor = app.screen
        assert editor.query_one("#pattern").value == r"^module\."
        await pilot.press("enter")
        await settle(app, pilot)
        assert main.session.report.strict_ok
        assert wizard.step.stage == "done"
        await pilot.press("escape")


async def test_guided_fixup_head_mismatch_then_export_loads_into_the_model(folder):
    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        assert main.session.report.shape_mismatch
        await pilot.press("f")
        await settle(app, pilot)
        step = app.screen.step
        assert step.stage == "shape"
        assert step.uninitialised == ["classifier.1.weight", "classifier.1.bias"]
        await pilot.press("a")
        await settle(app, pilot)
        assert app.screen.step.stage == "done"
        assert main.session.report.ok_with_accepted
        await pilot.press("a")  # "Export" from the last step
        await settle(app, pilot)
        export = app.screen
        assert export.query_one("#out").value == str(folder / "squeezenet1_1_finetuned_10cls.fixed.pt")
        await pilot.press("enter")
        await settle(app, pilot)
        assert export.result is not None and export.result.verified
        await pilot.press("escape")
        await settle(app, pilot)
    out = folder / "squeezenet1_1_finetuned_10cls.fixed.pt"
    assert (folder / "squeezenet1_1_finetuned_10cls.fixed.pt.recipe.json").exists()
    import torch
    import torchvision

    model = torchvision.models.squeezenet1_1()
    res = model.load_state_dict(torch.load(out, weights_only=True), strict=False)
    assert set(res.missing_keys) == {"classifier.1.weight", "classifier.1.bias"}
    assert not res.unexpected_keys


async def test_export_dataparallel_as_safetensors_loads_strictly(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model=SQUEEZE)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f")
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("escape")
        await pilot.press("e")
        await settle(app, pilot)
        app.screen.query_one("#safetensors").value = True
        await settle(app, pilot)
        assert app.screen.query_one("#out").value.endswith(".fixed.safetensors")
        await pilot.click("#go")
        await settle(app, pilot)
        assert app.screen.result.verified
    import torchvision
    from safetensors.torch import load_file

    model = torchvision.models.squeezenet1_1()
    model.load_state_dict(load_file(folder / "squeezenet1_1_dataparallel.fixed.safetensors"))


async def test_manual_rename_drop_accept_undo_redo(folder):
    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        s = main.session
        await pilot.press("D")  # drop by pattern, live preview
        await settle(app, pilot)
        await pilot.press(*r"^classifier\.1\.")
        await settle(app, pilot)
        assert "2 keys change" in str(app.screen.query_one("#preview-body").render())
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.report.missing == ["classifier.1.weight", "classifier.1.bias"]
        tree = main.query_one("#key-tree")
        tree.focus()
        tree.move_cursor(tree.root.children[1])  # classifier.1, now missing
        await pilot.press("a")
        await settle(app, pilot)
        assert "2 model keys stay" in str(app.screen.query_one(".dialog-body Static").render())
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.report.ok_with_accepted and len(s.recipe.ops) == 2
        await pilot.press("u")
        await settle(app, pilot)
        assert len(s.recipe.ops) == 1 and not s.report.ok_with_accepted
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert len(s.recipe.ops) == 2
        tree.move_cursor(tree.root.children[0])  # features
        await pilot.press("r")
        await settle(app, pilot)
        assert app.screen.query_one("#pattern").value == r"^features(?=\.|$)"
        await pilot.press("tab")
        await pilot.press("ctrl+u", *"body")  # replacement: features -> body
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert any(k.startswith("body.") for k in s.current())
        await pilot.press("d")  # drop the selected group: back to features being missing
        await settle(app, pilot)


async def test_load_attempt_failure_then_fix_cuda_saved(folder, no_cuda):
    app = make_app(folder / "tiny_vit_cuda.pt", map_location="keep")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("l")
        await settle(app, pilot)
        load = app.screen
        assert load.result is not None and not load.result.ok
        assert load.result.kind == "device_unavailable" or "cuda" in load.result.kind.lower() \
            or "device" in load.result.kind
        await pilot.press("enter")  # the first fix: map_location="cpu"
        await settle(app, pilot)
        assert load.result.ok, load.result.failure
        await pilot.press("escape")
        await settle(app, pilot)
        assert main.last_load.ok and main.session.policy.map_location == "cpu"


async def test_unsafe_load_needs_the_typed_confirmation(folder):
    app = make_app(folder / "tiny_vit_training_state.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        main.action_unsafe_load()
        await settle(app, pilot)
        confirm = app.screen
        body = str(confirm.query_one(".dialog-body Static").render())
        saved = folder / "tiny_vit_training_state.weights.safetensors"
        assert "argparse.Namespace" in body and str(saved) in body
        assert confirm.query_one("#yes").disabled
        await pilot.press(*"ye", "enter")
        assert confirm.query_one("#yes").disabled and app.screen is confirm
        await pilot.press("s", "enter")
        await settle(app, pilot)
        load = app.screen
        assert load.result.ok and load.result.policy["weights_only"] is False
        assert load.result.saved["path"] == str(saved) and saved.is_file()
        assert f"tensors saved to {saved}" in str(load.query_one("#load-result").render())
        await pilot.press("o")  # open the saved tensors: the repair goes on from them
        await settle(app, pilot)
        assert main.session.policy.weights_only  # an unsafe load is never sticky
        assert main.session.source.path == str(saved) and main.session.source.format == \
            "safetensors"
        assert "model.conv_proj.weight" in main.session.source.tensors
        assert saved.name in [e.name for e in main.query_one("#files").entries]


async def test_container_choice(folder):
    app = make_app(folder / "tiny_vit_training_state.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.press("down", "enter")
        await settle(app, pilot)
        assert main.session.recipe.container == ("model_ema",)


async def test_help_palette_command_line_and_quit(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "ctrl+p")
        await settle(app, pilot)
        await pilot.press(*"Maximise")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert main.maximized is not None
        await pilot.press("escape")
        assert main.maximized is None
        await pilot.press("colon", *"model torchvision:squeezenet1_1", "enter")
        await settle(app, pilot)
        assert "strict load: OK" in app.screen.result.plain()  # the shell's own output
        await pilot.press("escape")
        assert main.session.target is not None and main.session.report.strict_ok
        other = folder / "squeezenet1_1_dataparallel.pt"
        await pilot.press("colon", *f"open {other}", "enter")  # session change from a worker
        await settle(app, pilot)
        if type(app.screen).__name__ == "OutputScreen":
            await pilot.press("escape")
        assert main.session.source.path == str(other)
        assert main.query_one("#keys").index.status["module.features.0.weight"] == "unexpected"
        await pilot.press("colon", *"frobnicate", "enter")
        await settle(app, pilot)
        assert any("unknown command" in n.message for n in app._notifications)
        app.busy.add("export")
        await pilot.press("q")
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("escape")
        assert app.is_running
        app.busy.clear()
        await pilot.press("q")
    assert not app.is_running


async def test_a_running_load_can_be_cancelled(folder):
    app = make_app(folder / "squeezenet1_1.pt", map_location="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("l")
        await pilot.pause(0.3)  # the child is starting (importing torch takes a second)
        load = app.screen
        assert load.running and "load" in app.busy
        await pilot.press("escape")
        await settle(app, pilot)
        assert not load.running and "load" not in app.busy
        assert load.result.kind == "cancelled"


async def test_a_failing_worker_is_reported_not_silent(folder, monkeypatch):
    import pttui.core.analysis as analysis

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(analysis, "analyse", boom)
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert any("simulated bug" in n.message for n in app._notifications)
        pane = _main(app).query_one("#keys")
        assert pane.index is None and "simulated bug" in pane.message


async def test_open_command_moves_the_files_pane_to_that_folder(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(folder / "tiny_vit_cuda.pt", elsewhere / "moved.pt")
    app = make_app(folder)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = app.screen_stack[-1]
        files = main.query_one("#files")
        assert os.path.abspath(files.folder) == os.path.abspath(folder)
        await pilot.press("colon", *f"open {elsewhere / 'moved.pt'}", "enter")
        await settle(app, pilot)
        if type(app.screen).__name__ == "OutputScreen":
            await pilot.press("escape")
        assert main.session.source.path == str(elsewhere / "moved.pt")
        assert os.path.abspath(files.folder) == os.path.abspath(elsewhere)
        assert [e.name for e in files.entries] == ["moved.pt"]
