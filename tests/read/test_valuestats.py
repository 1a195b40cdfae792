"""Value statistics over a tensor bigger than one chunk: exact moments, progress, cancel."""

from __future__ import annotations

import threading

import pytest
import torch

from pttui.commands import Context, run_line
from pttui.core.read import valuestats
from pttui.core.read.reader import open_checkpoint
from pttui.core.read.valuestats import Cancelled, tensor_stats


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """3 chunks and a bit; a large mean with a small spread (sum-of-squares loses it)."""
    path = tmp_path_factory.mktemp("stats") / "big.pt"
    g = torch.Generator().manual_seed(0)
    w = (1e6 + torch.randn(3 * valuestats.CHUNK + 1000, generator=g, dtype=torch.float64))
    torch.save({"w": w}, path)
    return path, w


def test_multi_chunk_moments_match_torch(big):
    path, w = big
    ckpt = open_checkpoint(str(path))
    seen = []
    st = tensor_stats(ckpt, ckpt.tensors["w"], progress=lambda d, n: seen.append((d, n)))
    assert st.numel == w.numel()
    assert st.mean == pytest.approx(w.mean().item(), rel=1e-12)
    assert st.std == pytest.approx(w.std().item(), rel=1e-9)
    assert (st.min, st.max) == (w.min().item(), w.max().item())
    assert [d for d, _ in seen] == [valuestats.CHUNK * i for i in (1, 2, 3)] + [w.numel()]


def test_cancel_stops_between_chunks(big):
    path, _ = big
    ckpt = open_checkpoint(str(path))
    stop = threading.Event()
    calls = []

    def progress(done, n):
        calls.append(done)
        stop.set()  # asked to stop after the first chunk

    with pytest.raises(Cancelled):
        tensor_stats(ckpt, ckpt.tensors["w"], cancel=stop, progress=progress)
    assert calls == [valuestats.CHUNK]


def test_stats_command_reports_progress_and_honours_cancel(big):
    path, _ = big
    ctx = Context()
    assert run_line(ctx, f"open {path}").ok
    stop = threading.Event()
    seen = []

    def progress(done, total, what=""):
        seen.append(done)
        if len(seen) == 2:
            stop.set()

    r = run_line(ctx, "stats w", cancel=stop, progress=progress)
    assert r.status == "cancelled" and len(seen) == 2
    assert run_line(ctx, "stats w").ok  # the session goes on
