"""Every global pttui would offer for allow-listing is safe when torch calls it with the
file's arguments.

Each name on ``globalscan.SAFE_TO_ALLOW`` (and a NumPy dtype class) is fed pickles with
hostile arguments (shell lines, paths, URLs, nested pickles, huge and negative numbers,
other listed objects, hostile BUILD states), through REDUCE, NEWOBJ, NEWOBJ_EX, BUILD,
INST and OBJ, with plain, memoised and STACK_GLOBAL references, protocols 0, 2 and 4.
A child loads them all with ``torch.load(weights_only=True)`` and the whole list
allow-listed (the worst case: every listed name can reach every other) under an audit
hook, in an empty working folder: no file written, no socket, no process, no code
compiled or module imported. A control proves the hook sees a real payload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import P, torch_zip, zip_bytes  # noqa: E402

from pttui.core.read.pickle import globalscan  # noqa: E402

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_allowlist_child.py")
NAMES = sorted(globalscan.SAFE_TO_ALLOW) + ["numpy.dtypes.Float64DType",
                                             "numpy.dtypes.ObjectDType"]
SHELL = "touch pttui_pwned; curl http://127.0.0.1:9/x"
STRINGS = [SHELL, "pttui_pwned.txt", "/etc/passwd", "http://127.0.0.1:9/pwned",
           "__import__('os').system('touch pttui_pwned')", "O", "f8", "a" * 5000, ""]
NUMBERS = [0, -1, 2 ** 31, 10 ** 30, True]
NESTED = P(2).call("posix", "system", "touch pttui_pwned").bytes()  # a pickle in bytes


def _glob(p: P, name: str, how: str) -> P:
    module, _, attr = name.rpartition(".")
    if how == "stack":  # STACK_GLOBAL: the name as two strings; dotted names work too
        return p.str(module).str(attr).raw(b"\x93")
    p.glob(module, attr)
    if how == "memo":  # through the memo: stored, dropped, fetched back
        p.put(0).raw(b"0").get(0)
    return p


def _dict(items: dict):
    def emit(p: P) -> None:
        p.dict().mark()
        for k, v in items.items():
            p.value(k).value(v)
        p.setitems()
    return emit


def _list(values: list):
    def emit(p: P) -> None:
        p.raw(b"]").mark()
        for v in values:
            p.value(v)
        p.raw(b"e")
    return emit


def _obj(name: str, *args):
    """Another listed object built in place: what a hostile file passes as an argument."""
    def emit(p: P) -> None:
        _glob(p, name, "plain").mark()
        for a in args:
            p.value(a)
        p.tuple().reduce()
    return emit


STATE = {"__class__": "posix.system", "__reduce__": SHELL, "__setstate__": SHELL,
         "_str": "pttui_pwned", "_raw_paths": _list(["pttui_pwned"]), "write": SHELL,
         "default_factory": _obj("pathlib.PurePosixPath", "x"), "__dict__": _dict({"a": 1})}
OTHERS = [_obj("pathlib.Path", "pttui_pwned"), _obj("argparse.Namespace"),
          _obj("numpy.dtype", "O"), _obj("collections.deque", _list([SHELL])),
          _obj("decimal.Decimal", "1e999999999"), NESTED, bytes(64),
          _list([SHELL, 10 ** 30, _dict({SHELL: SHELL})]), _dict(STATE)]


def _variants(name: str) -> list[tuple[str, bytes]]:
    """(label, pickle) pairs calling ``name`` with hostile arguments in every way."""
    out: list[tuple[str, bytes]] = []

    def reduce(label: str, args: tuple, how: str = "plain", proto: int = 2) -> None:
        p = _glob(P(proto), name, how).mark()
        for a in args:
            p.value(a)
        out.append((label, p.tuple().reduce().bytes()))

    reduce("reduce-none", ())
    for i, a in enumerate(STRINGS + NUMBERS + OTHERS):
        reduce(f"reduce-{i}", (a,))
    reduce("reduce-three", (SHELL, "w", 0o777))
    reduce("reduce-mixed", (NUMBERS[3], OTHERS[0], STRINGS[0]))
    reduce("memo", (SHELL,), "memo")
    reduce("stack4", (SHELL,), "stack", proto=4)
    reduce("stack4-none", (), "stack", proto=4)
    for i, args in enumerate([(), (SHELL,), (OTHERS[0],)]):  # NEWOBJ: cls.__new__(cls, *args)
        p = _glob(P(2), name, "plain").mark()
        for a in args:
            p.value(a)
        out.append((f"newobj-{i}", p.tuple().raw(b"\x81").bytes()))
    kwargs = {"hex": SHELL, "name": SHELL, "mode": "w", "file": SHELL, "path": SHELL,
              "default_factory": OTHERS[0], "maxlen": 10 ** 30, "fqn": SHELL}
    p = _glob(P(4), name, "stack").raw(b")").value(_dict(kwargs)).raw(b"\x92")
    out.append(("newobj-ex", p.bytes()))
    for i, state in enumerate([_dict(STATE), (SHELL, 1, NESTED), (None, _dict(STATE)),
                               (1, (2, 3), OTHERS[2], False, NESTED),
                               (SHELL, OTHERS[0], 0, "pttui_pwned", True)]):
        p = _glob(P(2), name, "plain").raw(b")").reduce().value(state).raw(b"b")
        out.append((f"build-{i}", p.bytes()))
    module, _, attr = name.rpartition(".")
    inst = b"(" + P(0).value(SHELL).b[2:] + b"i" + f"{module}\n{attr}\n".encode() + b"."
    out.append(("inst", inst))
    p = P(2).mark()
    _glob(p, name, "plain").value(SHELL)
    out.append(("obj", p.raw(b"o").bytes()))
    return out


def _write(folder, cases: list[tuple[str, bytes]]) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    for label, pkl in cases:
        path = os.path.join(folder, f"{label}.pt")
        with open(path, "wb") as f:
            f.write(zip_bytes(torch_zip(pkl)))
        paths.append(path)
    return paths


def _run_child(tmp_path, allow: list[str], files: list[str], cwd) -> dict:
    spec = tmp_path / f"spec-{len(os.listdir(tmp_path))}.json"
    spec.write_text(json.dumps({"allow": allow, "files": files}))
    os.makedirs(cwd, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    env["http_proxy"] = env["https_proxy"] = "http://127.0.0.1:9"
    res = subprocess.run([sys.executable, CHILD, str(spec)], capture_output=True, text=True,
                         cwd=cwd, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_harness_sees_a_real_payload(tmp_path):
    """Control: names pttui refuses to offer do what the hook is there to see."""
    cases = [("run", P(2).call("torch.utils.collect_env", "run", "true").bytes()),
             ("copy", P(2).call("shutil", "copyfile", CHILD, "pttui_ctl.txt").bytes())]
    cwd = tmp_path / "cwd"
    got = _run_child(tmp_path, ["torch.utils.collect_env.run", "shutil.copyfile"],
                     _write(tmp_path / "files", cases), cwd)
    seen = {(f, e) for f, e, _ in got["events"]}
    assert ("run.pt", "subprocess.Popen") in seen, got
    assert ("copy.pt", "open") in seen, got
    assert os.listdir(cwd) == ["pttui_ctl.txt"]
    for name in ("torch.utils.collect_env.run", "shutil.copyfile"):
        assert globalscan.classify(name) == "dangerous"


def test_every_global_offered_for_allow_listing_is_inert_with_hostile_arguments(tmp_path):
    files: list[str] = []
    for name in NAMES:
        assert globalscan.classify(name) == "blocked", name  # what pttui would offer
        cases = [(f"{name}-{label}", pkl) for label, pkl in _variants(name)]
        files += _write(tmp_path / "files", cases)
    assert len(files) >= 40 * len(NAMES)
    cwd = tmp_path / "cwd"
    got = _run_child(tmp_path, NAMES, files, cwd)
    assert got["events"] == [], got["events"][:20]
    assert os.listdir(cwd) == []
    # the test means something: many hostile calls were let through and built values
    assert got["outcomes"]["loaded"] > len(NAMES) * 5, got["outcomes"]
