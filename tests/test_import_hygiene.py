"""The engine imports no UI toolkit and no torch at import time; the CLI's fast paths
import neither torch nor textual. Checked in fresh interpreters, via sys.modules."""

import json
import pkgutil
import subprocess
import sys

import pttui.core

HEAVY = ("torch", "textual", "prompt_toolkit", "pynvml", "numpy")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY)


def test_every_core_module_imports_without_ui_or_torch():
    names = [m.name for m in pkgutil.walk_packages(pttui.core.__path__, "pttui.core.")]
    assert "pttui.core.read.reader" in names and "pttui.core.read.pickle.unpickler" in names
    code = "\n".join(f"import {n}" for n in names)
    assert _heavy(_modules_after(code)) == []


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom pttui.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert _heavy(_modules_after(code)) == []


def test_inspect_imports_neither_torch_nor_textual(tmp_path):
    import torch

    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2, 3)}, path)
    code = (f"from pttui.cli import main\nimport io, contextlib\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['inspect', {str(path)!r}, '--json']) == 0")
    assert _heavy(_modules_after(code)) == []
