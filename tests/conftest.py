"""Only the ``gpu`` marker's skip: tests marked ``gpu`` run where a CUDA device exists."""

import pytest


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch means no CUDA
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture
def no_cuda(monkeypatch):
    """Child processes (load attempts, the CLI) see no GPU, as on a CPU-only box, so the
    CUDA-saved-file failures are tested on GPU machines too."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
