"""pttui/core's stage folders import only the folders below them (lazy imports too):
the order docs/architecture.md draws."""

import ast
import os

import pttui.core

ORDER = ["base", "read", "device", "load", "guard", "target", "compare", "recipe", "repair",
         "export", "session"]
CORE = os.path.dirname(pttui.core.__file__)


def _imports(path: str):
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_every_stage_imports_only_the_stages_below_it():
    rank = {stage: i for i, stage in enumerate(ORDER)}
    folders = sorted(d for d in os.listdir(CORE) if os.path.isdir(os.path.join(CORE, d))
                     and not d.startswith("__"))
    assert folders == sorted(ORDER)  # a new folder takes its place in the order
    loose = [f for f in os.listdir(CORE) if f.endswith(".py") and f != "__init__.py"]
    assert loose == []  # every module lives in a stage folder
    upward = []
    for folder, _dirs, files in os.walk(CORE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            mine = os.path.relpath(path, CORE).split(os.sep)[0]
            if mine not in rank:
                continue
            for line, module in _imports(path):
                parts = module.split(".")
                if parts[:2] == ["pttui", "core"] and len(parts) > 2 and \
                        rank.get(parts[2], -1) > rank[mine]:
                    upward.append(f"{os.path.relpath(path, CORE)}:{line} imports {module}")
    assert upward == []
