"""What each pane and dialog shows, read off the screen as the user sees it (80x24 first):
names that stay distinguishable, figures that are not cut, advice that fits the file."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import SAMPLES
from tests.tui.conftest import SQUEEZE, make_app, screen_text, settle, until

pytestmark = pytest.mark.slow


def _main(app):
    from pttui.tui.screens.main import MainScreen

    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def _shown(app) -> str:
    return "\n".join(screen_text(app))


async def _open(app, pilot, name: str) -> None:
    main = _main(app)
    names = [e.name for e in main.query_one("#files").entries]
    files = main.query_one("#files-list")
    files.focus()
    files.highlighted = 1 + names.index(name)  # after ../
    await pilot.press("enter")
    await settle(app, pilot)


async def test_files_pane_cuts_long_names_in_the_middle_and_keeps_marks_whole(folder):
    import shutil

    shutil.copy(folder / "squeezenet1_1_dataparallel.pt",
                folder / "squeezenet1_1_dataparallel.fixed.pt")
    app = make_app(folder / "squeezenet1_1_dataparallel.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        lines = screen_text(app)
        left = [line[1:25] for line in lines]  # inside the Files pane's border
        # the source and its .fixed.pt differ where they differ: at the end
        assert any(line.startswith("squeezenet") and line.rstrip().endswith("parallel.pt")
                   for line in left)
        assert any(line.rstrip().endswith("llel.fixed.pt") for line in left)
        main = _main(app)
        files = main.query_one("#files-list")
        names = [e.name for e in main.query_one("#files").entries]
        files.highlighted = files.option_count - 1  # scroll to the end: the marked files
        await pilot.pause(0.1)
        shown = _shown(app)
        assert names[-1] == "truncated.pt"
        assert "unreadable" in shown and "allowlist" in shown  # never cut to `allowli…`
        # the Keys pane names the open file
        assert "Keys · squeezenet1_1_dataparallel.pt" in shown


async def test_leaf_shape_mismatch_shows_the_models_shape_at_80_columns(folder):
    app = make_app(folder / "squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "home", "down", "right")  # open classifier.1
        await settle(app, pilot)
        shown = _shown(app)
        assert "weight  [10,512,1,1] model [1000,512,1,1]" in shown
        assert "bias  [10] model [1000]" in shown
        # a group with problems keeps its size figures
        assert "classifier.1 2 shape differs  2 keys · 5.1k" in shown


async def test_group_wholly_missing_gives_the_size_of_what_is_missing(folder):
    app = make_app(folder / "squeezenet1_1_compiled.pt", model=SQUEEZE)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        tree = _main(app).query_one("#key-tree")
        labels = [str(n.label) for n in tree.root.children]
        assert "features 50 missing · 722.5k · 2.8 MiB" in labels  # what is missing, sized
        assert "_orig_mod 52 unexpected  52 keys · 1.2M · 4.7 MiB" in labels


async def test_devices_fit_line_is_short_enough_for_its_pane(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        shown = screen_text(app)
        assert any("│ l: 4.7 MiB fits cuda:0" in line for line in shown)
        assert any("│   78.0 GiB free there" in line for line in shown)
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f3")  # on 80 columns the pane starts hidden
        await settle(app, pilot)
        assert "l: 4.7 MiB fits cuda:0" in _shown(app)


async def test_devices_pane_plans_the_open_file_and_g_picks_where_l_loads(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await until(pilot, lambda: "plan fits on cuda:0" in _shown(app))
        shown = _shown(app)
        # the fake GPU has 78 GiB free; the plan keeps room for a CUDA context
        assert "77.5 GiB to spare" in shown and "as bfloat16 2.4 MiB" in shown
        main = _main(app)
        seen = []
        for _ in range(4):
            await pilot.press("g")
            await settle(app, pilot)
            seen.append(main.session.policy.map_location)
        assert seen == ["cpu", "cuda:0", "meta", "auto"]
        await pilot.press("g")
        await settle(app, pilot)
        assert "map_location: cpu" in _shown(app) and "l: 4.7 MiB fits cpu" in _shown(app)


async def test_rename_from_a_group_empty_replacement_removes_the_prefix(folder):
    app = make_app(folder / "squeezenet1_1_compiled.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        tree = main.query_one("#key-tree")
        tree.focus()
        group = next(n for n in tree.root.children if n.data.row.key == "_orig_mod")
        tree.move_cursor(group)
        await pilot.press("r")
        await settle(app, pilot)
        editor = app.screen
        assert editor.query_one("#pattern").value == r"^_orig_mod\."
        assert editor.query_one("#replacement").value == "_orig_mod."
        body = str(editor.query_one("#preview-body").render())
        # nothing changes yet: the coverage on a line of its own, not run into the words
        assert body.startswith("no key changes\ncoverage: keys 0/52 -> 0/52")
        await pilot.press("tab", "ctrl+u")  # empty replacement: removes `_orig_mod.`
        await settle(app, pilot)
        body = str(editor.query_one("#preview-body").render())
        lines = body.splitlines()
        assert lines[0] == "52 keys change"
        assert lines[1] == "coverage: keys 0/52 -> 52/52 · elements 0.0% -> 100.0%"
        assert "_orig_mod.features.0.weight -> features.0.weight" in body
        assert "coverage: keys 0/52 -> 52/52" in _shown(app)  # on top: on the screen
        await pilot.press("enter")
        await settle(app, pilot)
        keys = list(main.session.current())
        assert "features.0.weight" in keys and not any(k.startswith(".") for k in keys)
        assert main.session.report.strict_ok


async def test_wizard_edit_preview_shows_the_coverage_change(folder):
    app = make_app(folder / "squeezenet1_1_dataparallel.pt", model=SQUEEZE)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        shown = _shown(app)
        assert "52 keys change" in shown
        assert "coverage: keys 0/52 -> 52/52 · elements 0.0% -> 100.0%" in shown


async def test_unreadable_file_shows_its_error_and_l_tries_torch_load(folder):
    app = make_app(folder / "truncated.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        assert main.session.source is None and main.unreadable[0].endswith("truncated.pt")
        shown = _shown(app)  # at 80x24 the Report shows under the keys, no key pressed
        assert "pttui cannot read this file" in shown and "open a checkpoint" not in shown
        # the reason holds the file's path, so where it wraps depends on the temp folder's
        # name: read it from the pane's text, not from the screen's lines
        assert "zip directory is missing" in str(main.query_one("#report-body").render())
        assert "Keys · truncated.pt" in shown
        await pilot.press("l")
        await settle(app, pilot)
        load = app.screen
        assert type(load).__name__ == "LoadScreen"
        assert load.result is not None and not load.result.ok
        assert load.result.kind == "corrupt_zip"
        await pilot.press("escape")
        await settle(app, pilot)
        assert main.last_load is load.result
        assert "failed: corrupt_zip" in str(main.query_one("#report-body").render())
        await pilot.press("e")  # other flows say why they do not apply
        assert any("could not be read" in n.message for n in app._notifications)


@pytest.mark.parametrize("name, says, loader", [
    ("tiny_vit_torchscript.pt", "TorchScript archive", "torch.jit.load"),
    ("tiny_vit_dcp", "torch.distributed.checkpoint folder", "torch.distributed.checkpoint.load"),
])
async def test_report_gives_the_loader_for_torchscript_and_dcp_not_allow_listing(
        folder, name, says, loader):
    app = make_app(folder / name)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        report = str(_main(app).query_one("#report-body").render())
        assert says in report and loader in report
        assert "needs allow-listing" not in report


async def test_report_still_says_allow_listing_for_a_pickled_checkpoint(folder):
    app = make_app(folder / "tiny_vit_training_state.pt")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        report = str(_main(app).query_one("#report-body").render())
        assert "needs allow-listing: argparse.Namespace" in report


async def test_a_load_after_allow_listing_names_the_globals_it_allowed(folder):
    app = make_app(folder / "tiny_vit_training_state.pt", map_location="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        await pilot.press("l")
        await settle(app, pilot)
        load = app.screen
        assert not load.result.ok
        fixes = load.result.failure.fixes
        at = next(i for i, f in enumerate(fixes)
                  if f.changes.get("allow_globals") and not f.unsafe)
        allowed = fixes[at].changes["allow_globals"]
        load.query_one("#load-fixes").highlighted = at
        await pilot.press("enter")
        await settle(app, pilot)
        assert load.result.ok, load.result.failure
        text = str(load.query_one("#load-result").render())
        assert f"allowed globals ({len(allowed)}): " + ", ".join(allowed) in text
        assert any("globals allowed" in n.message for n in app._notifications)
        await pilot.press("escape")
        await settle(app, pilot)
        report = str(main.query_one("#report-body").render())
        assert "allowed globals: " + ", ".join(allowed) in report


@pytest.mark.parametrize("name", ["malicious.pt", "tinynet_whole_model.pt"])
async def test_a_file_that_needs_code_gets_no_allow_list_and_no_preselected_unsafe_load(
        folder, name):
    shutil.copy(SAMPLES / name, folder / name)
    app = make_app(folder / name, map_location="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("l")
        await settle(app, pilot)
        load = app.screen
        assert not load.result.ok and load.result.kind == "weights_only_blocked"
        fixes = load.result.failure.fixes
        assert fixes and all(f.unsafe for f in fixes)  # only the consented load remains
        assert not any(f.changes.get("allow_globals") for f in fixes)
        assert load.query_one("#load-fixes").highlighted is None
        await pilot.press("enter")  # Enter alone never starts a load that runs code
        await settle(app, pilot)
        assert app.screen is load


async def test_statistics_on_a_missing_key_say_there_are_no_values(folder):
    app = make_app(folder / "squeezenet1_1_compiled.pt", model=SQUEEZE)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = _main(app)
        tree = main.query_one("#key-tree")
        tree.focus()
        group = next(n for n in tree.root.children if n.data.row.key == "classifier.1")
        tree.move_cursor(group)
        await pilot.press("right", "down", "enter")  # classifier.1.weight: only in the model
        await settle(app, pilot)
        details = app.screen
        assert type(details).__name__ == "DetailsScreen"
        await pilot.press("s")
        await settle(app, pilot)
        assert "no values to read: this key is not in the file" in \
            str(details.query_one("#stats").render())


async def test_model_picker_fits_80x24_with_a_long_error(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await settle(app, pilot)
        picker = app.screen
        picker.query_one("#spec").value = SQUEEZE
        picker.query_one("#args").value = "bogus_argument=3"
        picker.query_one("#args").focus()
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.pause(0.1)
        error = picker.status_text
        assert "bogus_argument" in error
        shown = _shown(app)
        assert "Use this model" in shown and "Cancel" in shown  # the buttons are on screen
        status = picker.query_one("#target-status")
        assert status.region.bottom <= picker.query_one("#build").region.y
        assert status.region.height >= len(error) // 76  # every line of the error


async def test_toggles_show_their_state_by_shape(folder):
    app = make_app(folder / "squeezenet1_1.pt")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        shown = _shown(app)
        assert "(●) .pt (torch.save" in shown and "( ) .safetensors" in shown
        assert "[x] write the recipe too" in shown and "[ ] overwrite existing" in shown
