"""The guarded reading child: ``python -m pttui.core.guard._child open PATH`` or
``list FOLDER HUNG_JSON``, watched by :mod:`pttui.core.guard.readguard` (its own module,
so that the child never holds a second copy of the guard as ``__main__``)."""

from __future__ import annotations

import os
import sys

from pttui.core.base import deadline
from pttui.core.base.orphans import die_with_spawner


def main(argv: list[str]) -> None:
    """The child: ``open PATH`` or ``list FOLDER HUNG_JSON``; reports on stdout, one line
    each: ``F PATH`` before reading a file, ``P BYTES`` per pickle, ``E JSON`` per entry."""
    import dataclasses
    import json

    from pttui.core.read.folder import list_folder
    from pttui.core.base.meta import ReadError
    from pttui.core.read.reader import open_checkpoint

    die_with_spawner()
    out = sys.stdout

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    deadline.report = say
    if argv[0] == "open":
        say(f"F {argv[1]}")
        try:
            open_checkpoint(argv[1], unpickle_only=True)  # only unpickling can hang
        except ReadError:
            pass
    else:
        entries = list_folder(argv[1], progress=lambda p: say(f"F {p}"),
                              hung=json.loads(argv[2]))
        for e in entries:
            say("E " + json.dumps(dataclasses.asdict(e)))
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
