"""The session's temp-folder check: a test run that leaves more than a few MB in the temp
folder fails, and says what it left (CI machines fill up; users' /tmp is theirs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LEAKY = '''
import os, tempfile

def test_leaves_a_file_behind():
    with open(os.path.join(tempfile.gettempdir(), "left-behind.bin"), "wb") as f:
        f.write(b"x" * {size})
'''


@pytest.mark.parametrize("size, fails", [(6 * 2**20, True), (64 * 2**10, False)])
def test_a_session_that_leaves_files_in_the_temp_folder(tmp_path, size, fails):
    (tmp_path / "test_leaky.py").write_text(LEAKY.format(size=size))
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("PYTEST_XDIST_WORKER", None)
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q",
                          "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                          str(tmp_path / "test_leaky.py")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert "1 passed" in res.stdout, res.stdout + res.stderr
    assert "the tests left 1 entry" in res.stdout and "left-behind.bin" in res.stdout
    assert res.returncode == (1 if fails else 0), res.stdout
    assert ("FAILED: the tests left" in res.stdout) == fails
