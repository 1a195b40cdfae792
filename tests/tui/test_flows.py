"""Each flow driven like a person would: keys in, state and files out (Pilot)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.tui.conftest import SQUEEZE, make_app, screen_text, settle, until

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


async def test_the_names_are_in_the_first_frame(folder, monkeypatch):
    """A folder that lists at once is listed before the first frame: no "reading" frame."""
    from pttui.tui.widgets import files

    monkeypatch.setattr(files, "QUICK_LIST_S", 30.0)  # "at once" on a busy CI machine
    app = make_app(folder)
    async with app.run_test(size=(120, 40)):
        text = "\n".join(screen_text(app))
        assert "squeezenet1_1.pt" in text and "reading" not in text


async def test_a_slow_folder_is_listed_by_the_worker(folder, monkeypatch):
    """Past QUICK_LIST_S the first frame says it is reading; the worker lists it."""
    import threading

    from pttui.core.read import folder as folder_mod
    from pttui.tui.widgets import files

    monkeypatch.setattr(files, "QUICK_LIST_S", -1.0)  # every folder is "slow"
    real, gate = folder_mod.list_folder, threading.Event()

    def held(path, examine=True, **kw):
        if not examine and kw.get("deadline") is None:  # the worker's listing
            gate.wait(10)  # held until the first frame is checked
        return real(path, examine, **kw)

    monkeypatch.setattr(folder_mod, "list_folder", held)
    app = make_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        assert "(reading…)" in "\n".join(screen_text(app))
        gate.set()
        await settle(app, pilot)
        text = "\n".join(screen_text(app))
        assert "squeezenet1_1.pt" in text and "reading" not in text
        assert _main(app).first_paint is not None  # the device poll started after it


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
        await settle(app, pilot)  # Enter on the list builds the model at once
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
    """Skip "num_classes=10", drop the head, then acknowledge strict=False on its own step."""
    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        assert main.session.report.shape_mismatch
        await pilot.press("f")
        await settle(app, pilot)
        wizard = app.screen
        assert wizard.step.stage == "classes"
        await pilot.press("s")  # keep the 1000-class model: replace the head instead
        await settle(app, pilot)
        step = wizard.step
        assert step.stage == "shape" and not step.uninitialised
        assert step.leaves_missing == ["classifier.1.weight", "classifier.1.bias"]
        await pilot.press("a")  # drops the head; accepts nothing yet
        await settle(app, pilot)
        assert not main.session.recipe.accepted_missing
        assert not main.session.report.ok_with_accepted
        step = wizard.step
        assert step.stage == "accept"  # the strict=False acknowledgement, a step of its own
        assert step.uninitialised == ["classifier.1.weight", "classifier.1.bias"]
        shown = "\n".join(screen_text(app))
        assert "fits the model" not in shown
        assert "Leave 2 uninitialised (a)" in shown
        # every key it leaves uninitialised is on the 80x24 screen without scrolling
        assert "classifier.1.weight" in shown and "classifier.1.bias" in shown
        await pilot.press("a")
        await settle(app, pilot)
        assert wizard.step.stage == "done"
        assert main.session.report.ok_with_accepted
        assert main.session.recipe.accepted_missing == ("classifier.1.weight",
                                                       "classifier.1.bias")
        # the last step offers the export only: no Edit, no Skip
        assert not wizard.query_one("#edit").display and not wizard.query_one("#skip").display
        assert "fits the model" not in wizard.step.title
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


async def test_guided_fixup_offers_num_classes_and_rebuilds_the_model(folder):
    """The head-mismatch sample: the first step rebuilds the model with num_classes=10
    (the class count the diagnosis names); undo puts the 1000-class model back."""
    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("f")
        await settle(app, pilot)
        wizard = app.screen
        step = wizard.step
        assert step.stage == "classes" and step.title == "build the model with num_classes=10"
        assert step.target.args == {"num_classes": 10} and step.after.strict_ok
        assert str(wizard.query_one("#accept").label) == "Rebuild the model (a)"
        shown = "\n".join(screen_text(app))
        assert "keys 50/52 -> 52/52 · elements 58.5% -> 100.0%" in shown
        await pilot.press("a")
        await settle(app, pilot)
        assert main.session.target.args == {"num_classes": 10}
        assert main.session.recipe_for_file().model_args == {"num_classes": 10}
        assert main.session.report.strict_ok and not main.session.recipe.ops
        assert wizard.step.stage == "done" and wizard.step.title == "the checkpoint fits the model"
        await pilot.press("u")  # the model goes back to 1000 classes
        await settle(app, pilot)
        assert main.session.target.args == {} and main.session.report.shape_mismatch
        assert wizard.step.stage == "classes"
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("a")  # Export
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen.result.verified
        # the replay command rebuilds the same model
        assert "--model-arg num_classes=10" in str(app.screen.query_one("#export-status")
                                                   .render())
        await pilot.press("escape")
        await settle(app, pilot)
    import torch
    import torchvision

    model = torchvision.models.squeezenet1_1(num_classes=10)
    model.load_state_dict(torch.load(folder / "squeezenet1_1_finetuned_10cls.fixed.pt",
                                     weights_only=True))  # strict: every key fits


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
        assert app.screen.query_one("#pattern").value == r"^features\."
        assert app.screen.query_one("#replacement").value == "features."
        await pilot.press("tab")
        await pilot.press("ctrl+u", *"body.")  # replacement: features. -> body.
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
        await pilot.press("q")  # nothing runs: no question
    assert not app.is_running


async def test_ctrl_q_inside_a_running_load_asks_first(folder):
    """A real load in its child process: ctrl+q works inside the load dialog and asks;
    once the load is over it quits at once."""
    app = make_app(folder / "squeezenet1_1.pt", map_location="cpu")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("l")
        await pilot.pause(0.2)  # the child is starting (importing torch takes a second)
        load = app.screen
        assert type(load).__name__ == "LoadScreen" and load.running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        confirm = app.screen
        assert "Stop the load and quit?" in "\n".join(screen_text(app))
        await pilot.press("ctrl+q")  # asking already: no second dialog
        assert app.screen is confirm
        await pilot.press("escape")  # "Cancel": back to the load, which goes on
        await until(pilot, lambda: app.screen is load)
        assert app.is_running
        await settle(app, pilot)
        assert load.result.ok and not app.busy
        await pilot.press("ctrl+q")  # nothing runs now: quits without asking
        await pilot.pause(0.2)
    assert not app.is_running


async def test_ctrl_q_during_an_export_asks_and_quitting_leaves_nothing(folder, monkeypatch):
    """A real export, held after its first tensor so that it is surely running: the
    fields are locked (typing changes nothing), ctrl+q asks, Quit cancels the export
    and nothing is left behind."""
    import threading

    import pttui.core.session.export as session_export

    real, running, finished = session_export.export_session, threading.Event(), \
        threading.Event()

    def held(*args, progress=None, cancel=None, **kwargs):
        def hold(done, total):
            progress(done, total)
            running.set()
            cancel.wait(30)  # until the user stops it

        try:
            return real(*args, progress=hold, cancel=cancel, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(session_export, "export_session", held)
    app = make_app(folder / "squeezenet1_1_dataparallel.pt")
    out = folder / "squeezenet1_1_dataparallel.fixed.pt"
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        export = app.screen
        await pilot.press("enter")  # Export
        # the export's first tensor waits for torch's import: seconds on a loaded machine
        await until(pilot, running.is_set, 90)
        assert export.running and "export" in app.busy
        field = export.query_one("#out")
        assert field.disabled and app.focused is export.query_one("#cancel")
        await pilot.press("a", "a", "q")  # stray keys: the path stays as it was
        assert field.value == str(out) and app.screen is export and app.is_running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        assert "Stop the export and quit?" in "\n".join(screen_text(app))
        await pilot.press("enter")  # "Quit" has the focus
        await pilot.pause(0.2)
    assert not app.is_running
    assert finished.wait(30)  # the exporter saw the cancel and cleaned up
    assert sorted(p.name for p in folder.iterdir() if "fixed" in p.name) == []
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


async def test_export_dialog_after_a_run_shows_the_result_and_focuses_close(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("f")
        await settle(app, pilot)
        await pilot.press("a", "escape")  # strip `module.`: a recipe of one step
        await settle(app, pilot)
        assert len(main.session.recipe.ops) == 1
        await pilot.press("e")
        await settle(app, pilot)
        export = app.screen
        await pilot.press("enter")
        await settle(app, pilot)
        assert export.result.verified
        assert app.focused is export.query_one("#go") and str(export.query_one("#go").label) \
            == "Close"
        assert not export.query_one("#export-form").display  # the form made room
        shown = screen_text(app)
        assert any("verified: every tensor read back" in line for line in shown)
        assert any("Close" in line for line in shown)  # on the 24 lines, not below them
        value = export.query_one("#out").value
        await pilot.press("a", "a")
        assert export.query_one("#out").value == value
        await pilot.press("enter")  # Close
        await settle(app, pilot)
        assert app.screen is main and main.exported_recipe is main.session.recipe
        files = main.query_one("#files-list")
        names = [e.name for e in main.query_one("#files").entries]
        other = 1 + names.index("squeezenet1_1.pt")
        # a recipe changed since its export would be lost: that asks
        from pttui.core.recipe.recipe import Drop

        main.session.apply(Drop(r"^features\.0\.bias$", kind="regex"))
        await settle(app, pilot)
        files.focus()
        files.highlighted = other
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("escape")
        main.action_undo()  # the exported recipe again
        await settle(app, pilot)
        assert main.exported_recipe is main.session.recipe
        files.focus()
        files.highlighted = other
        await pilot.press("enter")  # what was exported is safe: no question
        await settle(app, pilot)
        assert app.screen is main and main.session.source.path.endswith("squeezenet1_1.pt")


async def test_a_failing_worker_is_reported_not_silent(folder, monkeypatch):
    import pttui.core.repair.analysis as analysis

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


async def test_command_line_tab_completes_like_the_shell(folder):
    """The `:` box shows the shell's completion inline; Tab takes it, a dotted level at
    a time, then the whole key."""
    app = make_app(folder / "squeezenet1_1_dataparallel.pt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("colon", *"info module.features.3.sq")
        box = app.screen.query_one("#command-line")
        for want in ("info module.features.3.squeeze.", "info module.features.3.squeeze.weight"):
            for _ in range(100):  # the suggestion is built in a thread
                await pilot.pause(0.05)
                if box._suggestion:
                    break
            await pilot.press("tab")
            assert box.value == want and box.has_focus
            if want.endswith("."):
                await pilot.press("w")
                await pilot.press("backspace")
        await pilot.press("enter")
        await settle(app, pilot)
        assert "[16, 64, 1, 1]" in app.screen.result.plain()


async def test_colon_open_asks_before_dropping_the_recipe_and_apply_takes_the_reports_step(
        folder):
    """`:apply 1` takes the Report's first suggestion (no `:suggest` needed); `:open`
    of another file asks first, as the Files pane does, while the recipe is unexported."""
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model=SQUEEZE)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("colon", *"apply 1", "enter")
        await settle(app, pilot)
        if type(app.screen).__name__ == "OutputScreen":
            await pilot.press("escape")
        assert [op.describe() for op in main.session.recipe.ops] == ["strip prefix `module.`"]
        await pilot.press("colon", *f"open {folder / 'squeezenet1_1.pt'}", "enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("escape")  # keep the recipe
        await settle(app, pilot)
        assert main.session.source.path.endswith("dataparallel.pt") and main.session.recipe.ops
        await pilot.press("colon", *f"open {folder / 'squeezenet1_1.pt'}", "enter")
        await settle(app, pilot)
        await pilot.click("#yes")
        await settle(app, pilot)
        if type(app.screen).__name__ == "OutputScreen":
            await pilot.press("escape")
        assert main.session.source.path.endswith("squeezenet1_1.pt")
