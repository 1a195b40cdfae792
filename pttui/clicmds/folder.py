"""``pttui [PATH]`` without a terminal UI: the folder's checkpoints, one line each."""

from __future__ import annotations

import argparse
import os
import sys

from pttui.core.base import humanize as hz
from pttui.core.base import partials
from pttui.core.guard import list_guarded
from pttui.core.base import ReadError

_MARK_TEXT = {"unsafe-globals": "DANGEROUS globals", "needs-allowlist": "weights_only refuses",
              "cuda-saved": "saved on CUDA", "unreadable": "unreadable", "damaged": "damaged"}
_NAME_MAX = 64


def run(args: argparse.Namespace) -> int:
    path = args.path or "."
    if os.path.isfile(path):
        from pttui.clicmds import inspect
        args.json, args.select, args.depth = False, None, None
        return inspect.run(args)
    if not os.path.isdir(path):
        raise ReadError(f"{path}: no such file or folder")
    entries = list_guarded(path)  # each file read in a child: one crafted file cannot hang it
    sys.stdout.write(f"{os.path.abspath(path)}\n")
    if not entries:
        sys.stdout.write("  no checkpoints here\n")
    # one column width for every name (the longest, up to _NAME_MAX; longer ones elided)
    width = min(max([40, *(len(e.name) for e in entries)]), _NAME_MAX)
    for e in entries:
        if e.is_dir:
            sys.stdout.write(f"  {hz.middle_elided(e.name, width)}\n")
            continue
        size = hz.nbytes(e.size) if e.size else ""
        what = hz.plural(e.tensors, "tensor") if e.format and "unreadable" not in e.marks else ""
        marks = "; ".join(_MARK_TEXT.get(m, m) for m in e.marks)
        name = hz.middle_elided(e.name, width)
        line = f"  {name:<{width}} {size:>10}  {e.badge:<12} {what:<13} {marks}"
        if "unreadable" in e.marks:
            line += f": {e.message}"
        sys.stdout.write(line.rstrip()[:220] + "\n")
    left = partials.leftovers(path)
    if left:
        what = "export left by a killed run" if len(left) == 1 else "exports left by killed runs"
        sys.stdout.write(f"  + {len(left)} hidden partial {what} "
                         f"({hz.nbytes(sum(x.size for x in left))}); the next export into "
                         "this folder removes them\n")
    sys.stdout.write("\nInspect one: pttui inspect FILE   (add --json for scripts)\n")
    return 0
