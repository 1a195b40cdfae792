"""Screenshots of the main screen, the report and the wizard at 80x24 and 120x40.

The devices pane is fed by a fake source and the folder shows relative to the repo,
so the pictures do not depend on the machine. Update after a deliberate change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import pytest

from tests.tui.conftest import ROOT, SQUEEZE, make_app, settle

SIZES = [(80, 24), (120, 40)]
SAMPLE = "sample_checkpoints/squeezenet1_1_dataparallel.pt"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def _before(*keys: str):
    async def run(pilot) -> None:
        app = pilot.app
        await settle(app, pilot)
        # toasts first ("model set"): cleared once a dialog covers the screen, the
        # screen behind it is not repainted and a toast's last row would stay in view
        app.clear_notifications()
        await pilot.pause(0.1)
        # the cursor follows the key it was on across re-analyses, and whether the first
        # analysis (before the model arrived) was shown depends on timing: start at the top
        for key in ("2", "home", *keys):
            await pilot.press(key)
            await settle(app, pilot)
        app.clear_notifications()
        await pilot.pause()

    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, size):
    app = make_app(SAMPLE, model=SQUEEZE)
    assert snap_compare(app, terminal_size=size, run_before=_before("right"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_report(snap_compare, size):
    app = make_app(SAMPLE, model=SQUEEZE)
    keys = ("3",) if size[0] < 100 else ("3", "z")  # narrow: under the keys; wide: maximised
    assert snap_compare(app, terminal_size=size, run_before=_before(*keys))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_wizard(snap_compare, size):
    app = make_app("sample_checkpoints/squeezenet1_1_finetuned_10cls.pt", model=SQUEEZE)
    assert snap_compare(app, terminal_size=size, run_before=_before("f"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_malicious_file(snap_compare, size):
    app = make_app("sample_checkpoints/malicious.pt")
    assert snap_compare(app, terminal_size=size, run_before=_before())


@pytest.fixture
def variant_folder(tmp_path, monkeypatch):
    """resnet34 weights, to be cut down by hand to fit resnet18 (the folder shows as .)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34_weights.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_wrong_variant_with_manual_drops(snap_compare, size, variant_folder):
    from pttui.core.recipe import Drop

    async def run(pilot) -> None:
        app = pilot.app
        await settle(app, pilot)
        main = app.screen
        s = main.session
        s.set_recipe(s.recipe.with_op(Drop(
            r"^(layer1\.2|layer2\.[23]|layer3\.[2-5]|layer4\.2)\.", "regex")))
        await settle(app, pilot)
        await _before()(pilot)

    app = make_app(variant_folder / "resnet34_weights.pt", model="torchvision:resnet18")
    assert snap_compare(app, terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cuda_file_after_load(snap_compare, size, no_cuda):
    async def run(pilot) -> None:
        app = pilot.app
        await settle(app, pilot)
        await pilot.press("l")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        main = app.screen
        assert main.last_load is not None and main.last_load.ok
        main.last_load.seconds = 1.0  # the real load's duration varies: pinned for the picture
        main._show_report()
        await _before("3", "end")(pilot)  # the last load and its note, at the end

    app = make_app("sample_checkpoints/tiny_vit_cuda.pt", map_location="cpu")
    assert snap_compare(app, terminal_size=size, run_before=run)
