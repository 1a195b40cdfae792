"""Write the SVG screenshots docs/tui.md shows (docs/img/tui-*.svg).

    .venv/bin/python scripts/tui_screenshots.py

Runs the app headless on the sample checkpoints with a fixed, fake device source (one
H100, 64 GiB RAM), so the pictures do not depend on the machine that makes them.
Exports land in a temporary copy of the samples, never in sample_checkpoints/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tui.conftest import SQUEEZE, make_app, settle  # noqa: E402

OUT = ROOT / "docs" / "img"


async def shot(name: str, path: str, size: tuple[int, int], keys: list[str],
               model: str | None = SQUEEZE, **options) -> None:
    app = make_app(path, model=model, **options)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for key in keys:
            if key.startswith("type:"):
                await pilot.press(*key[5:])
            else:
                await pilot.press(key)
            await settle(app, pilot)
        app.clear_notifications()
        await pilot.pause()
        app.save_screenshot(str(OUT / f"tui-{name}.svg"))
    print(f"wrote docs/img/tui-{name}.svg")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pttui-shots-")) / "checkpoints"
    shutil.copytree(ROOT / "sample_checkpoints", work,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md", "*.json"))
    os.chdir(work.parent)
    dp, ft = "checkpoints/squeezenet1_1_dataparallel.pt", \
        "checkpoints/squeezenet1_1_finetuned_10cls.pt"
    await shot("main", dp, (120, 40), ["2", "home", "right"])
    await shot("main-80x24", dp, (80, 24), [])
    await shot("target", "checkpoints/squeezenet1_1.pt", (100, 30),
               ["m", "type:squeeze"], model=None)
    await shot("wizard", dp, (100, 30), ["f"])
    await shot("wizard-head", ft, (100, 30), ["f"])  # num_classes=10
    await shot("wizard-ack", ft, (80, 24), ["f", "s", "a"])  # the strict=False step
    await shot("export", ft, (100, 30), ["f", "a", "a", "enter"])
    await shot("load", "checkpoints/tiny_vit_cuda.pt", (100, 30), ["l"], model=None,
               map_location="keep")
    await shot("filter", dp, (120, 40), ["slash", "type:expand3x3"])
    shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
