"""A 100,000-key file in the app: expanding groups, filtering, filling a flat group in
chunks. The latency figures are printed for the log; benchmarks/bench_tui.py checks
them against the targets (speed belongs in benchmarks, not in pass/fail tests)."""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.tui.conftest import make_app, settle
from tests.tui.test_keyfilter import write_safetensors

pytestmark = pytest.mark.slow


def write_flat(path, n=100_000):
    """100,000 keys with no dots at all: one group of 100,000 children."""
    header = {f"w{i:06d}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i in range(n)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * n))


async def _timed(pilot, *keys) -> float:
    t0 = time.perf_counter()
    await pilot.press(*keys)
    await pilot.pause()
    return time.perf_counter() - t0


async def _measure(pilot, pane, key: str, baseline: float) -> tuple[float, float]:
    """(seconds the pane's handler took, press-to-paint seconds above the baseline)."""
    pane.last_ms = 0.0
    wall = await _timed(pilot, key)
    return pane.last_ms / 1000, max(wall - baseline, 0.0)


def _ms(pairs) -> str:
    return ", ".join(f"{h * 1000:.0f}/{p * 1000:.0f}" for h, p in pairs)


async def test_expand_and_filter_100k_keys(tmp_path, record_property):
    path = tmp_path / "big.safetensors"
    write_safetensors(path)
    app = make_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = app.screen_stack[-1]
        pane, tree = main.query_one("#keys"), main.query_one("#key-tree")
        assert pane.index is not None and len(pane.index.keys) == 100_000
        tree.focus()
        baseline = min([await _timed(pilot, "end") for _ in range(3)])
        await pilot.press("home")
        expand = [await _measure(pilot, pane, "right", baseline)]  # -> {0..999}.blocks ×1000
        await pilot.press("down")
        expand.append(await _measure(pilot, pane, "right", baseline))  # -> {0..24}
        await pilot.press("slash")
        typing = [await _measure(pilot, pane, ch, baseline) for ch in "fc1.w"]
        assert len(pane.matched) == 25_000
        typing.append(await _measure(pilot, pane, "backspace", baseline))
    record_property("expand_s", expand)
    record_property("filter_s", typing)
    # figures for the log; the targets are checked by benchmarks/bench_tui.py, not here
    print(f"\n100k keys (handler/paint ms): expand {_ms(expand)}; filter {_ms(typing)}")


async def test_flat_100k_keys_fill_in_chunks(tmp_path):
    path = tmp_path / "flat.safetensors"
    write_flat(path)
    app = make_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        main = app.screen_stack[-1]
        pane, tree = main.query_one("#keys"), main.query_one("#key-tree")
        assert len(tree.root.children) == 201  # 200 rows and a "more" line
        tree.focus()
        baseline = min([await _timed(pilot, "end") for _ in range(3)])
        tree.move_cursor(tree.root.children[-1])
        more = await _timed(pilot, "enter") - baseline
        assert len(tree.root.children) == 401
        await pilot.press("slash")
        typing = [await _measure(pilot, pane, ch, baseline) for ch in "w0999"]
        assert len(pane.matched) == 100  # w099900 .. w099999
    print(f"\nflat 100k (handler/paint ms): more {more * 1000:.0f}; filter {_ms(typing)}")
    print(f"\nflat 100k keys: more {more * 1000:.0f} ms; filter {_ms(typing)}")
