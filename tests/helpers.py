"""Shared helpers for tests: run the CLI in a subprocess, compare with torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_checkpoints"


def run_cli(*args: str, env: dict | None = None, timeout: float = 120,
            cwd: str | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pttui.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd)


def inspect_json(path, *extra: str, env: dict | None = None) -> dict:
    res = run_cli("inspect", str(path), "--json", *extra, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def torch_facts(sd) -> dict:
    """key -> (shape, dtype name) of a real state_dict, as inspect reports them."""
    return {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()}


def reader_facts(tensors) -> dict:
    return {t.key: (list(t.shape), t.dtype) for t in tensors.values()}


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (torch is already imported here): fast, same code path."""
    from pttui.cli import main

    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


_SESSION_FOLDERS: list[str] = []


def session_temp_folder(prefix: str) -> str:
    """A temp folder made at import or collection time (before any fixture can run),
    removed when the test session ends, before the temp-folder check in conftest."""
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix)
    _SESSION_FOLDERS.append(folder)
    return folder


def remove_session_folders() -> None:
    import shutil

    while _SESSION_FOLDERS:
        shutil.rmtree(_SESSION_FOLDERS.pop(), ignore_errors=True)
