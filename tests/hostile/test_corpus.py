"""Every hostile corpus file: bounded time and memory, a right answer, nothing run or imported.

``pytest tests/hostile/test_corpus.py -s`` prints the result table.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_corpus  # noqa: E402

from tests.helpers import session_temp_folder  # noqa: E402

WALL_S = 30  # per file; the slowest takes well under a second
MEMORY = 1536 << 20  # address space of the pttui process
MAX_STDOUT = 1 << 20  # a 3 KB bomb must not become a 25 MB answer

# Leaves a marker when imported; its classes leave one when instantiated or called.
HOSTILE_MODULE = textwrap.dedent("""
    import os
    _dir = os.environ.get("PTTUI_MARKER_DIR", ".")
    open(os.path.join(_dir, "imported-" + __name__), "w").close()

    class Payload:
        def __init__(self, *a):
            open(os.path.join(_dir, "ran-Payload"), "w").close()

    class Net:
        def __init__(self, *a):
            open(os.path.join(_dir, "ran-Net"), "w").close()
""")


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.fixture(scope="module")
def corpus():
    root, entries = _built()
    mods = root / "mods"
    mods.mkdir(exist_ok=True)
    (mods / f"{make_corpus.MOD}.py").write_text(HOSTILE_MODULE)
    return root, entries


def _built():
    """Generate the corpus once per run (collection needs the names too)."""
    cached = getattr(_built, "cache", None)
    if cached is None:
        root = pathlib.Path(session_temp_folder("pttui-hostile-"))
        cached = (root, make_corpus.build(str(root / "corpus")))
        _built.cache = cached  # type: ignore[attr-defined]
    return cached


def _inspect(root, entry, *extra: str) -> dict:
    markers = root / "markers" / entry.name
    markers.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PTTUI_MARKER_DIR": str(markers), "PTTUI_READ_DEADLINE": "5",
           "PYTHONPATH": os.pathsep.join([str(root / "mods"), os.environ.get("PYTHONPATH", "")])}
    path = root / "corpus" / (entry.open or entry.name)
    t0 = time.monotonic()
    try:
        res = subprocess.run([sys.executable, "-m", "pttui.cli", "inspect", str(path), *extra],
                             capture_output=True, text=True, env=env, timeout=WALL_S,
                             preexec_fn=_limits, errors="replace")
        rc, out, err = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = "timeout", "", ""
    return {"rc": rc, "out": out, "err": err, "seconds": time.monotonic() - t0,
            "markers": sorted(os.listdir(markers))}


@pytest.fixture(scope="module")
def results(corpus):
    root, entries = corpus

    def run(entry):
        got = _inspect(root, entry, "--json")
        if entry.notes and got["rc"] == 0:
            text = _inspect(root, entry)
            got["text"], got["markers"] = text["out"], got["markers"] + text["markers"]
        return entry.name, got
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, entries))


def pytest_generate_tests(metafunc):
    if "entry_name" in metafunc.fixturenames:
        metafunc.parametrize("entry_name", [e.name for e in _built()[1]])


def test_corpus_file(corpus, results, entry_name):
    _root, entries = corpus
    entry = next(e for e in entries if e.name == entry_name)
    got = results[entry_name]
    assert got["rc"] != "timeout", f"no answer within {WALL_S}s"
    assert got["markers"] == [], f"pickled code ran or a named module was imported: {got}"
    assert "Traceback" not in got["err"] and "internal error" not in got["err"], got["err"]
    assert len(got["out"]) < MAX_STDOUT, f"{len(got['out']):,} bytes of output"
    if entry.exit == 2:
        assert got["rc"] == 2, f"expected a refusal, got rc={got['rc']}: {got['out'][:300]}"
        lines = got["err"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("pttui: "), got["err"]
        assert entry.message in lines[0], lines[0]
        return
    assert got["rc"] == 0, got["err"]
    doc = json.loads(got["out"])
    assert doc["format"] == entry.format
    assert [t["key"] for t in doc["tensors"]] == entry.keys
    if entry.devices is not None:
        assert sorted({t["device"] for t in doc["tensors"]}) == sorted(entry.devices)
    assert set(entry.dangerous) <= set(doc["globals"]["dangerous"]), doc["globals"]
    assert set(entry.blocked) <= set(doc["globals"]["blocked"]), doc["globals"]
    notes = [ln.strip() for ln in got.get("text", "").splitlines() if ln.strip().startswith("note:")]
    for want in entry.notes:
        assert any(want in n for n in notes), f"no note with {want!r}: {notes}"


REQUIRED = [  # the issue's list, each covered by at least one entry
    "zip: truncated", "zip: missing central", "zip: no data.pkl", "zip: no version",
    "zip: files at the archive root", "zip: duplicate names", "zip: local and central",
    "zip: deflated", "zip: encrypted", "zip: zip64", "data/../x", "pickle with a zip appended",
    "storage: numel larger", "storage: view beyond", "storage: negative shape",
    "storage: huge shape", "storage: huge stride", "storage: unknown dtype",
    "storage: unknown storage type", "storage: key pointing to a missing record", "cuda:7",
    "xla", "mps", "garbage", "protocol 4", "protocol 5", "INST/OBJ", "STACK_GLOBAL",
    "REDUCE payload", "nested pickle.loads", "memo-reference bomb", "200,000",
    "huge length prefix", "legacy tar", "TorchScript", "DCP .metadata", "DeepSpeed latest",
    "header length 2^40", "duplicate offsets", "overlapping", "out-of-order",
    "shorter than", "longer than", "overflowing shape", "non-string metadata",
    "weight_map pointing outside", "not: empty", "not: text", "not: .npy", "not: plain pickle",
    "safetensors renamed to .pt",
]


def test_corpus_covers_the_issue_and_prints_a_table(corpus, results):
    _root, entries = corpus
    assert len(entries) >= 40
    covers = " | ".join(e.covers for e in entries)
    assert [r for r in REQUIRED if r not in covers] == []
    rows = []
    for e in entries:
        got = results[e.name]
        if got["rc"] == 0:
            doc = json.loads(got["out"])
            what = f"{doc['format']}, {len(doc['tensors'])} tensors"
            if doc["globals"]["dangerous"]:
                what += f", dangerous: {', '.join(doc['globals']['dangerous'][:3])}"
        else:
            what = got["err"].strip().split(": ", 2)[-1][:90]
        rows.append(f"| {e.name} | {e.covers} | exit {got['rc']} | {got['seconds']:.2f}s | {what} |")
    print("\n| file | covers | outcome | time | reading or message |\n|---|---|---|---|---|")
    print("\n".join(rows))
    slowest = max(results.values(), key=lambda g: g["seconds"])
    print(f"\n{len(entries)} files; slowest {slowest['seconds']:.2f}s")


def test_torch_reads_the_same_tensors(corpus, results):
    """Where torch.load(weights_only=True) loads a corpus file, pttui read the same tensors."""
    torch = pytest.importorskip("torch")
    root, entries = corpus
    checked = 0
    for e in entries:
        if not e.torch_same:
            continue
        doc = json.loads(results[e.name]["out"])
        loaded = torch.load(root / "corpus" / e.name, weights_only=True, map_location="cpu")
        assert {t["key"]: t["shape"] for t in doc["tensors"]} == {
            k: list(v.shape) for k, v in loaded.items()}, e.name
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name, markers", [
    ("pickle_reduce_exec.pt", {"ran-exec"}),
    ("pickle_stack_global_memo.pt", {"ran-stack_global"}),
    ("pickle_inst_obj.pt", {"ran-inst", "ran-Payload", f"imported-{make_corpus.MOD}"}),
    ("protocol0_payload.pt", {"ran-proto0"}),
    ("legacy_tar_payload.pt", {"ran-tar"}),  # torch still reads the 0.1-0.3 tar format
])
def test_positive_control_the_payloads_are_live(corpus, name, markers):
    """torch.load(weights_only=False) on the same files does run them: the markers work."""
    root, _ = corpus
    out = root / "control" / name
    out.mkdir(parents=True)
    env = {**os.environ, "PTTUI_MARKER_DIR": str(out),
           "PYTHONPATH": os.pathsep.join([str(root / "mods"), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys, torch\ntry: torch.load(sys.argv[1], weights_only=False)\n"
            "except Exception: pass")
    subprocess.run([sys.executable, "-c", code, str(root / "corpus" / name)], env=env,
                   timeout=120, capture_output=True)
    assert markers <= set(os.listdir(out))


def test_corpus_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_corpus.build(str(a))
    make_corpus.build(str(b))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_deepspeed_symlinks_out_of_the_folder_are_refused(tmp_path):
    """`latest` may name a folder inside; neither it nor the model file may lead outside."""
    from pttui.core.base.meta import ReadError
    from pttui.core.read.reader import open_checkpoint

    outside = tmp_path / "outside"
    (outside / "global_step1").mkdir(parents=True)
    (outside / "global_step1" / "mp_rank_00_model_states.pt").write_bytes(make_corpus.good_zip())
    ds = tmp_path / "ds"
    (ds / "global_step2").mkdir(parents=True)
    (ds / "latest").write_text("global_step1\n")
    (ds / "global_step1").symlink_to(outside / "global_step1")
    with pytest.raises(ReadError, match="outside its folder"):
        open_checkpoint(str(ds))
    (ds / "latest").write_text("global_step2\n")
    (ds / "global_step2" / "mp_rank_00_model_states.pt").symlink_to(
        outside / "global_step1" / "mp_rank_00_model_states.pt")
    with pytest.raises(ReadError, match="outside its folder"):
        open_checkpoint(str(ds))
