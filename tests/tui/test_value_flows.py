"""Value steps in the TUI: `t` transposes the selected key, the guided fix-up offers
the found transposes with their shapes before and after, and the export of the result
loads strictly into the real model."""

from __future__ import annotations

import torch
import torch.nn as nn

from tests.tui.conftest import make_app, screen_text, settle

MODEL = ("import torch.nn as nn\n\n\ndef build():\n"
         "    return nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))\n")


def _files(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    stored = {k: v.t().contiguous() if v.dim() == 2 else v for k, v in model.state_dict().items()}
    torch.save(stored, tmp_path / "mlp_t.pt")
    (tmp_path / "mlp.py").write_text(MODEL)
    return tmp_path / "mlp_t.pt", f"{tmp_path / 'mlp.py'}:build", model


async def test_t_transposes_the_selected_key_and_u_undoes_it(tmp_path):
    path, spec, _ = _files(tmp_path)
    app = make_app(path, model=spec)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = app.screen
        s = main.session
        assert s.report.shape_mismatch
        tree = main.query_one("#key-tree")
        tree.focus()
        layer = tree.root.children[0]  # `0`: its weight is stored transposed
        layer.expand()
        await settle(app, pilot)
        tree.move_cursor(layer.children[0])  # 0.weight
        await pilot.press("t")
        await settle(app, pilot)
        assert [op.name for op in s.recipe.ops] == ["transpose"]
        assert tuple(s.current()["0.weight"].shape) == (16, 32)
        assert any("transposed 1 key" in n.message for n in app._notifications)
        await pilot.press("u")
        await settle(app, pilot)
        assert not s.recipe.ops


async def test_the_guided_fix_up_offers_the_transposes_and_the_export_loads(tmp_path):
    path, spec, model = _files(tmp_path)
    app = make_app(path, model=spec)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = app.screen
        await pilot.press("f")
        await settle(app, pilot)
        shown = "\n".join(screen_text(app))
        assert "values and shapes" in shown and "transpose 2 weights" in shown
        step = str(app.screen.query_one("#step").render())
        assert "0.weight [32, 16] -> 0.weight [16, 32] (transpose)" in step
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert main.session.report.strict_ok
        await pilot.press("e")
        await settle(app, pilot)
        await pilot.press("enter")
        for _ in range(300):
            await pilot.pause(0.05)
            if getattr(app.screen, "result", None) is not None:
                break
        assert app.screen.result.verified
    fresh = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    fresh.load_state_dict(torch.load(tmp_path / "mlp_t.fixed.pt", weights_only=True))
    x = torch.randn(2, 32)
    torch.testing.assert_close(fresh(x), model(x))
