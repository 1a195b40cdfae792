"""``pttui [PATH]``: the TUI on a terminal, the folder listing when piped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli
from tests.tui.conftest import ROOT, SAMPLES


def test_piped_prints_the_listing_and_accepts_the_tui_options():
    res = run_cli("--no-mouse", "--map-location", "cpu", str(SAMPLES))
    assert res.returncode == 0, res.stderr
    assert "squeezenet1_1_dataparallel.pt" in res.stdout and "DANGEROUS globals" in res.stdout
    res = run_cli("--no-mouse", cwd=str(SAMPLES))
    assert res.returncode == 0 and "tiny_vit_cuda.pt" in res.stdout


def test_launch_options_resolve_file_and_folder():
    from pttui.tui.app import LaunchOptions

    opts = LaunchOptions.from_path(str(SAMPLES / "tiny_vit_cuda.pt"))
    assert opts.folder == str(SAMPLES) and opts.select == str(SAMPLES / "tiny_vit_cuda.pt")
    opts = LaunchOptions.from_path(str(SAMPLES / "tiny_vit_dcp"))  # a DCP folder is a file
    assert opts.select == str(SAMPLES / "tiny_vit_dcp")
    assert LaunchOptions.from_path(str(SAMPLES)).select is None


def _read_until(fd: int, needle: bytes, timeout: float, *more: bytes) -> bytes:
    """What the terminal shows until ``needle`` (and each of ``more``) has been drawn:
    Textual may paint one pane's title in a later update than another's."""
    out, end = b"", time.monotonic() + timeout
    while not all(n in out for n in (needle, *more)) and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


@pytest.mark.slow
def test_on_a_terminal_it_opens_the_tui_and_q_quits():
    pid, fd = pty.fork()
    if pid == 0:  # the child: pttui on a real pseudo-terminal, 100x30
        os.environ.update(TERM="xterm-256color", COLUMNS="100", LINES="30")
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "pttui.cli", "--no-mouse",
                                  "sample_checkpoints/squeezenet1_1.pt"])
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        screen = _read_until(fd, b"Keys", 60, b"Files")
        assert b"Files" in screen and b"Keys" in screen, screen[-500:]
        time.sleep(1.0)
        os.write(fd, b"q")
        _read_until(fd, b"\x00never", 3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_help_mentions_the_tui_options():
    res = subprocess.run([sys.executable, "-m", "pttui.cli", "--no-mouse", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--map-location" in res.stdout and "--model" in res.stdout
