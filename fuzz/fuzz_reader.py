"""Coverage-guided fuzzing of pttui's reader with atheris (libFuzzer for Python).

Each input is written to a temp file and opened with ``open_checkpoint``, then
turned into the ``inspect --json`` document. The contract: a Checkpoint or a
ReadError. Any other exception, a hang (``-timeout``) or a memory blow-up
(``-rss_limit_mb``) is a finding. See fuzz/README.md.

    python fuzz/fuzz_reader.py --make-seeds SEEDS    # samples + hostile corpus
    python fuzz/fuzz_reader.py WORK SEEDS -runs=100000 -max_len=262144 -timeout=20
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAX_SEED = 256 << 10


def make_seeds(out: str) -> int:
    """Copy the small sample checkpoints and generate the hostile corpus into ``out``."""
    os.makedirs(out, exist_ok=True)
    n = 0
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "sample_checkpoints")):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.getsize(path) <= _MAX_SEED and not name.endswith((".py", ".md")):
                shutil.copy(path, os.path.join(out, f"sample-{n}-{name}"))
                n += 1
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "hostile", "make_corpus.py"),
                        tmp], check=True, stdout=subprocess.DEVNULL)
        for folder, _dirs, files in os.walk(tmp):
            for name in files:
                path = os.path.join(folder, name)
                # hash-cost bombs hang any in-process read by design (the front ends
                # bound them with pttui.core.guard.readguard); as seeds they stop the run
                if os.path.getsize(path) <= _MAX_SEED and name != "corpus.json" \
                        and "hash_bomb" not in name:
                    shutil.copy(path, os.path.join(out, f"corpus-{n}-{name}"))
                    n += 1
    return n


def _save(folder: str, err: BaseException, data: bytes) -> None:
    """One file per distinct (exception type, innermost pttui frame)."""
    import hashlib
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if "pttui" in f.filename]
    where = f"{os.path.basename(frames[-1].filename)}-{frames[-1].lineno}" if frames else "?"
    name = f"{type(err).__name__}-{where}"
    os.makedirs(folder, exist_ok=True)
    if not any(n.startswith(name + "-") for n in os.listdir(folder)):
        digest = hashlib.sha1(data).hexdigest()[:12]
        with open(os.path.join(folder, f"{name}-{digest}.bin"), "wb") as f:
            f.write(data)
        print(f"FINDING {name}: {str(err)[:200]}", file=sys.stderr, flush=True)


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        from pttui.core.base.meta import ReadError
        from pttui.core.read.reader import open_checkpoint

    work = tempfile.mkdtemp(prefix="pttui-fuzz-")
    path = os.path.join(work, "input.pt")

    record = os.environ.get("PTTUI_FUZZ_RECORD")  # keep going: save each new finding there
    printed: list[BaseException] = []  # errors CPython prints instead of raising

    def hook(_type, value, _tb) -> None:
        printed.append(value)
    sys.excepthook = hook
    sys.unraisablehook = lambda u: printed.append(u.exc_value)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        try:
            _one(data)
            if printed:
                raise RuntimeError(f"CPython printed an internal error: {printed.pop()!r}")
        except Exception as err:  # noqa: BLE001 - a finding
            printed.clear()
            if not record:
                raise
            _save(record, err, data)

    def _one(data: bytes) -> None:
        try:
            ckpt = open_checkpoint(path)
        except ReadError as err:
            assert "\n" not in str(err), "a ReadError message spans lines"
            return
        json.dumps(ckpt.to_json())  # what `pttui inspect --json` prints

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        print(f"{make_seeds(sys.argv[2])} seeds in {sys.argv[2]}")
    else:
        main()
