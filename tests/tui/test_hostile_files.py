"""A file crafted to hang the reader (a hash-cost bomb) never freezes the app."""

from __future__ import annotations

import os
import shutil
import sys

from tests.tui.conftest import SAMPLES, make_app, settle

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "hostile"))
from craft import hash_bomb  # noqa: E402


async def test_a_file_that_hangs_the_reader_is_marked_and_the_app_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PTTUI_READ_DEADLINE", "2")
    (tmp_path / "bomb.pt").write_bytes(hash_bomb())
    shutil.copy(SAMPLES / "squeezenet1_1.pt", tmp_path / "good.pt")
    app = make_app(tmp_path / "bomb.pt")  # `pttui bomb.pt`: opened at once
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = app.screen_stack[-1]
        assert any("reading did not finish in 2 s" in n.message for n in app._notifications)
        assert main.session.source is None
        files = main.query_one("#files")
        bomb = next(e for e in files.entries if e.name == "bomb.pt")
        good = next(e for e in files.entries if e.name == "good.pt")
        assert "unreadable" in bomb.marks and "did not finish" in bomb.message
        assert good.tensors == 52 and not good.marks
        await pilot.press("colon", *f"open {tmp_path / 'good.pt'}", "enter")  # still alive
        await settle(app, pilot)
        if type(app.screen).__name__ == "OutputScreen":
            await pilot.press("escape")
        assert main.session.source.path == str(tmp_path / "good.pt")


async def test_a_load_that_never_ends_is_cancelled_by_escape(tmp_path, monkeypatch):
    """torch.load of the hash bomb never returns by itself, so the cancel is what ends
    it, on a fast machine or a slow one."""
    monkeypatch.setenv("PTTUI_READ_DEADLINE", "1")
    (tmp_path / "bomb.pt").write_bytes(hash_bomb())
    app = make_app(tmp_path / "bomb.pt", map_location="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("l")  # the reader gave up; torch.load is still worth a try
        await pilot.pause(1.5)
        load = app.screen
        assert type(load).__name__ == "LoadScreen"
        assert load.running and "load" in app.busy
        assert "loading" in str(load.query_one("#load-elapsed").render())
        await pilot.press("escape")
        await settle(app, pilot)
        assert not load.running and "load" not in app.busy
        assert load.result.kind == "cancelled"
        await pilot.press("escape")  # the second escape closes the dialog
        await settle(app, pilot)
        assert app.screen is app.screen_stack[-1] and type(app.screen).__name__ == "MainScreen"
