"""The ``gpu`` marker's skip (tests marked ``gpu`` run where a CUDA device exists), and
the check that a test session leaves the temp folder as it found it."""

import os
import signal
import tempfile

import pytest

from tests.helpers import remove_session_folders

# More than this left in the temp folder by a passing session fails it.
TEMP_LEFT_LIMIT = 5 * 1024 * 1024
_TEMP = tempfile.gettempdir()


def _temp_entries() -> set[str]:
    try:
        # pytest's own base folders, and other runs' private folders (scripts/test makes
        # one per run and removes it itself): a run beside this one is not a leftover
        return {n for n in os.listdir(_TEMP) if not n.startswith(("pytest-of-", "pttui-tests."))}
    except OSError:
        return set()


def _size(path: str) -> int:
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            return os.lstat(path).st_size
        except OSError:
            return 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def pytest_configure(config):
    # A run started in the background of a non-interactive shell (`cmd &`, nohup, some CI
    # runners) inherits SIGINT ignored, and so would every child it starts: the Ctrl-C
    # tests would test nothing. Handling it here also gives the children the default back
    # (exec resets handled signals; ignored ones stay ignored).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session):
    session.config.stash[_BEFORE] = _temp_entries()


_BEFORE = pytest.StashKey[set]()


@pytest.hookimpl(trylast=True)  # after pytest removed the tmp_path folders of passed tests
def pytest_sessionfinish(session, exitstatus):
    remove_session_folders()
    before = session.config.stash.get(_BEFORE, None)
    if before is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    new = sorted(_temp_entries() - before)
    sizes = {name: _size(os.path.join(_TEMP, name)) for name in new}
    total = sum(sizes.values())
    if not new:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    listing = ", ".join(f"{n} ({sizes[n] / 2**20:.1f} MiB)" for n in new[:10])
    entries = f"{len(new)} {'entry' if len(new) == 1 else 'entries'}"
    line = f"the tests left {entries}, {total / 2**20:.1f} MiB, in {_TEMP}: {listing}"
    if reporter is not None:
        reporter.write_line(("FAILED: " if total > TEMP_LEFT_LIMIT else "note: ") + line)
    if total > TEMP_LEFT_LIMIT and session.exitstatus == 0:
        session.exitstatus = 1


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
