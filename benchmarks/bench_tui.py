"""The TUI with the 100,000-key file: latency of expanding a group and of filter keystrokes.

    python benchmarks/bench_tui.py [--runs 5] [--workdir DIR]

Runs the real app headless (``App.run_test``, 120x40) on ``keys100k.pt`` (no two
neighbouring blocks alike, so nothing folds into a ``{0..99}`` row). Latency of one
key = from sending the key event until the first screen update (compositor render)
after the pane's handler has finished: the frame a user would see. Device polling
and the torch version lookup are stubbed out so they do not add noise.

- expand: ``right`` on a collapsed group: ``model.layers`` (100 rows) and
  ``model.layers.N.experts`` (250 rows, the first 200 shown), on ``--runs`` groups;
- filter: ``/`` then typing ``experts.12`` one key at a time (the first keys match
  nearly all 100,000 keys), then three backspaces (each widens the search).
Baseline in the same run: a keystroke that only moves the cursor (``down``).

Target (issue 7): expanding a group or one filter keystroke under 100 ms (median; the
worst is shown too).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from common import Workdir, base_args, fmt_s, header, table, verdict
from make_inputs import ensure


class _Probe:
    """Timestamps of screen updates and of the key tree pane's work."""

    def __init__(self, app, pane_cls) -> None:
        self.frames: list[float] = []
        self.done: list[float] = []
        real_display = app._display

        def display(screen, renderable):
            if renderable is not None:
                self.frames.append(time.perf_counter())
            return real_display(screen, renderable)

        app._display = display
        for name in ("set_filter", "_fill"):
            real = getattr(pane_cls, name)

            def wrapped(*a, _real=real, **kw):
                try:
                    return _real(*a, **kw)
                finally:
                    self.done.append(time.perf_counter())

            setattr(pane_cls, name, wrapped)

    async def press(self, pilot, key: str) -> float:
        """Seconds from sending ``key`` to the first frame after the work it caused."""
        self.frames.clear()
        self.done.clear()
        t0 = time.perf_counter()
        await pilot.press(key)
        await pilot.pause()
        end = max(self.done) if self.done else t0
        after = [f for f in self.frames if f >= end]
        return (min(after) if after else end) - t0


async def measure(path: str, runs: int) -> dict[str, list[float]]:
    from pttui.tui.app import LaunchOptions, PttuiApp
    from pttui.tui.widgets.keytree import KeyTree, KeyTreePane

    app = PttuiApp(LaunchOptions.from_path(path), device_source=lambda: None,
                   versions_source=lambda: None)
    out: dict[str, list[float]] = {"cursor down (baseline)": [], "expand model.layers": [],
                                   "expand layers.N.experts": [], "filter keystroke": [],
                                   "filter backspace": []}
    async with app.run_test(size=(120, 40)) as pilot:
        probe = _Probe(app, KeyTreePane)
        t0 = time.perf_counter()
        while True:
            pane = app.screen.query(KeyTreePane)
            idx = pane.first().index if pane else None
            if idx is not None and len(idx.keys) == 100_000:
                break
            if time.perf_counter() - t0 > 120:
                raise SystemExit("the key tree never showed 100,000 keys")
            await asyncio.sleep(0.05)
        opened = time.perf_counter() - t0
        tree = app.screen.query_one(KeyTree)
        tree.focus()
        await pilot.pause()
        top = tree.root.children[0]  # model.layers
        tree.move_cursor(top)
        await pilot.pause()
        out["expand model.layers"].append(await probe.press(pilot, "right"))
        for i in range(runs):  # moving the cursor over the 100 layer rows
            tree.move_cursor(top.children[i])
            await pilot.pause()
            out["cursor down (baseline)"].append(await probe.press(pilot, "down"))
        for i in range(runs):
            keys_pane = pane.first()
            keys_pane._open.clear()  # forget open and filled groups: each expansion is cold
            keys_pane._rebuild()
            await pilot.pause()
            top = tree.root.children[0]
            tree.move_cursor(top)
            await pilot.pause()
            out["expand model.layers"].append(await probe.press(pilot, "right"))
            layer = top.children[i % len(top.children)]
            tree.move_cursor(layer)
            await pilot.pause()
            out["expand layers.N.experts"].append(await probe.press(pilot, "right"))
        out["expand model.layers"].pop(0)  # the first expansion warmed caches
        await pilot.press("slash")
        await pilot.pause()
        for ch in "experts.12":
            out["filter keystroke"].append(await probe.press(pilot, ch))
        for _ in range(3):
            out["filter backspace"].append(await probe.press(pilot, "backspace"))
    out["_opened"] = [opened]
    return out


def main() -> None:
    args = base_args(__doc__.split("\n")[0]).parse_args()
    header("TUI latency, 100,000 keys (headless App.run_test, in-process)", args.runs)
    with Workdir(args.workdir) as wd:
        path = ensure(wd, ["keys100k"])["keys100k"]
        alone = wd / "tui"  # a folder holding just this file: the listing reads nothing else
        alone.mkdir(exist_ok=True)
        link = alone / path.name
        if not link.exists():
            link.symlink_to(path)
        res = asyncio.run(measure(str(link), args.runs))
    print(f"file open to key tree shown (read + analyse + index): {fmt_s(res.pop('_opened')[0])}\n")
    base = statistics.median(res["cursor down (baseline)"])
    rows, verdicts = [], []
    for what, times in res.items():
        med, worst = statistics.median(times), max(times)
        rows.append([what, str(len(times)), fmt_s(med), fmt_s(worst), f"{med / base:.1f}x"])
        if "baseline" not in what:
            verdicts.append([f"{what} < 100 ms (median of {len(times)}; worst {fmt_s(worst)})",
                             fmt_s(med), verdict(med < 0.1)])
    print(table(["keystroke", "n", "median", "worst", "vs cursor move"], rows))
    print("\n### targets\n")
    print(table(["target", "measured", "met"], verdicts))


if __name__ == "__main__":
    main()
