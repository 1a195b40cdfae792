"""The house's layering (pyproject.toml's import-linter contracts, lazy imports too):
core's stage folders import only the stages below them, the three fronts never import
each other, core imports no UI toolkit; and every module of core lives in a stage
folder that the contract lists."""

import os
import tomllib

import pttui.core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
CORE = os.path.dirname(pttui.core.__file__)


def _contracts() -> dict:
    with open(PYPROJECT, "rb") as f:
        config = tomllib.load(f)["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_import_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    rc = lint_imports(config_filename=PYPROJECT, no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "3 kept, 0 broken" in out


def test_every_module_of_core_lives_in_a_listed_stage():
    stages = _contracts()["core-stages"]["layers"]
    folders = sorted(d for d in os.listdir(CORE) if os.path.isdir(os.path.join(CORE, d))
                     and not d.startswith("__"))
    assert folders == sorted(stages)  # a new folder takes its place in the contract
    loose = [f for f in os.listdir(CORE) if f.endswith(".py") and f != "__init__.py"]
    assert loose == []


def test_no_import_cycle_in_pttui():
    """No module reaches back to one that imports it (lazy imports count): a cycle is
    what made `import pttui.core.reader` fail once a lazy import moved to the top."""
    import grimp

    graph = grimp.build_graph("pttui", cache_dir=None)
    cycles = sorted({tuple(sorted((m, n))) for m in graph.modules
                     for n in graph.find_modules_directly_imported_by(m)
                     if graph.chain_exists(importer=n, imported=m)})
    assert len(graph.modules) > 100 and cycles == []


def _private_names_used_across_folders() -> list[str]:
    """`from pttui.a.b import _x` or `b._x` where b lives in another folder than the
    importer: a private name is its folder's business."""
    import ast
    import pathlib

    root = pathlib.Path(ROOT)
    found = []
    for path in sorted((root / "pttui").rglob("*.py")):
        rel = path.relative_to(root)
        here = ".".join(rel.parts[:-1])
        tree = ast.parse(path.read_text())
        modules = {}  # local name -> module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pttui"):
                is_pkg = (root / node.module.replace(".", "/")).is_dir()
                owner = node.module if is_pkg else node.module.rsplit(".", 1)[0]
                for alias in node.names:
                    if is_pkg:
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    if _private(alias.name) and owner != here:
                        found.append(f"{rel}:{node.lineno} {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("pttui"):
                        modules[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in modules):
                module = modules[node.value.id]
                if module.rsplit(".", 1)[0] != here:
                    found.append(f"{rel}:{node.lineno} {module}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_uses_the_private_names_of_another_folder():
    assert _private_names_used_across_folders() == []


def _faces() -> dict[str, dict[str, str]]:
    """{package: {name: module}} as each folder's __init__ declares its face."""
    import ast
    import pathlib

    faces = {}
    for init in sorted(pathlib.Path(CORE).rglob("__init__.py")):
        for node in ast.walk(ast.parse(init.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "face":
                table = ast.literal_eval(node.args[1])
                package = ".".join(init.relative_to(ROOT).parts[:-1])
                faces[package] = {n: m for m, names in table.items() for n in names}
    return faces


def test_every_name_on_a_face_is_the_one_its_module_defines():
    import importlib

    faces = _faces()
    assert len(faces) >= 10
    for package, names in faces.items():
        pkg = importlib.import_module(package)
        folder = os.path.dirname(pkg.__file__)
        for name, module in names.items():
            # a name that is also a submodule would be shadowed by it once imported
            assert not os.path.exists(os.path.join(folder, name + ".py")), (package, name)
            value = getattr(pkg, name)
            assert value is getattr(importlib.import_module(f"{package}.{module}"), name)
            home = getattr(value, "__module__", None)
            assert home in (None, f"{package}.{module}") or not home.startswith("pttui"), \
                f"{package}.{name} is re-exported by {module}; the face names {home}"


def test_the_fronts_import_core_through_its_faces():
    """tui, shell, clicmds and commands import core's names from the folders' packages
    (``from pttui.core.read import open_checkpoint``), or a module from its package."""
    import ast
    import pathlib

    deep = []
    for path in sorted(pathlib.Path(ROOT, "pttui").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pttui.core"):
                if not os.path.isdir(os.path.join(ROOT, *node.module.split("."))):
                    deep.append(f"{rel}:{node.lineno} from {node.module} import ...")
    assert deep == []


def test_a_face_costs_nothing_until_a_name_is_used():
    import subprocess
    import sys

    code = ("import sys, pttui.core.read, pttui.core.repair, pttui.core.load\n"
            "print(sorted(m for m in sys.modules if m.startswith('pttui.core.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert eval(out) == ["pttui.core.base", "pttui.core.base.face", "pttui.core.load",
                         "pttui.core.read", "pttui.core.repair"]


def test_a_face_shows_what_replaces_a_name_in_its_module(monkeypatch):
    """A name lives in its module only: a front that imports it through the face after a
    test (or anyone) replaced it there gets the replacement, however often it was used."""
    import pttui.core.session as face
    import pttui.core.session.export as home
    from pttui.core.session import export_session as before

    assert before is home.export_session

    def replaced(*args, **kwargs):
        raise AssertionError("not called")

    monkeypatch.setattr(home, "export_session", replaced)
    from pttui.core.session import export_session as after

    assert after is replaced and face.export_session is replaced
