"""Child of test_allowlist_property: torch.load(weights_only=True) every file given, with
the given globals allow-listed, under an audit hook that records every side effect.

argv: a JSON file {"allow": [names], "files": [paths]}. Prints one JSON object:
{"events": [[file, event, detail], ...], "outcomes": {"loaded": n, "refused": n}}.
The modules of the allowed names are imported before the hook goes in: importing is
not what is tested, calling is. After each load the result is used the way a script
would (repr, str, a missing-key read) while the hook still listens.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# audit events that mean the load did something besides building values
WATCHED = ("os.", "shutil.", "socket.", "subprocess.", "ctypes.", "urllib.", "http.",
           "ftplib.", "smtplib.", "webbrowser.", "sqlite3.", "exec", "compile", "import",
           "pty.", "fcntl.", "mmap.", "marshal.", "pickle.find_class", "builtins.input",
           "code.", "cpython.run_", "glob.", "tempfile.", "syslog.")


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    import torch

    allowed = [_resolve(n) for n in spec["allow"]]
    warm = io.BytesIO()  # torch.load imports its own helpers on first use: not the file's doing
    torch.save({"w": torch.zeros(1), "ns": 1.5}, warm)
    warm.seek(0)
    torch.load(warm, weights_only=True)
    events: list[list[str]] = []
    current = ["(setup)"]
    listening = [False]

    def hook(event: str, args: tuple) -> None:
        if not listening[0]:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, 0])[:3]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                    (isinstance(flags, int) and flags & WRITE_FLAGS):
                events.append([current[0], event, repr(args)[:200]])
        elif event.startswith(WATCHED) and event not in ("os.listdir", "os.scandir"):
            events.append([current[0], event, repr(args)[:200]])

    sys.addaudithook(hook)
    outcomes = {"loaded": 0, "refused": 0}
    with torch.serialization.safe_globals(allowed):
        for path in spec["files"]:
            current[0] = os.path.basename(path)
            listening[0] = True
            try:
                obj = torch.load(path, weights_only=True)
            except Exception:  # noqa: BLE001 - refusals are expected; side effects are not
                outcomes["refused"] += 1
                listening[0] = False
                continue
            outcomes["loaded"] += 1
            for use in (repr, str, lambda o: o["pttui-missing-key"], hash, len, iter):
                try:
                    use(obj)
                except Exception:  # noqa: BLE001
                    pass
            listening[0] = False
    print(json.dumps({"events": events, "outcomes": outcomes}))


if __name__ == "__main__":
    main()
