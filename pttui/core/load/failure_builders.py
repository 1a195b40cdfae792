"""The builders of each failure kind: the explanation in plain words and the fixes.

:func:`~pttui.core.load.failures.classify` decides which kind a child's error is;
the functions here word it (device, missing module, weights-only globals) and the
failures the parent decides itself (out of memory, timeout, cancel, crash, save).
"""

from __future__ import annotations

import re
from typing import Any

from pttui.core.read.pickle import globalscan
from pttui.core.base import humanize
from pttui.core.load.failure_model import (
    CANCELLED,
    CRASHED,
    DEVICE_UNAVAILABLE,
    MISSING_MODULE,
    OUT_OF_MEMORY,
    SAVE_FAILED,
    TIMEOUT,
    WEIGHTS_ONLY,
    Fix,
    LoadFailure,
    _first_line,
    _unsafe_fix,
    strip_ansi,
)

_DEVICE_COUNT_RE = re.compile(r"device_count\(\) is (\d+)")
_NOT_ALLOWED_RE = re.compile(r"GLOBAL (\S+) was not an allowed global by default")
_BLOCKED_MODULE_RE = re.compile(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked")
_BUT_GOT_RE = re.compile(r"but got <class '([\w.]+)'>")
_WO_REASON_RE = re.compile(r"Trying to load unsupported GLOBAL [^\n]*|Unsupported operand \d+")
_NO_MODULE_RE = re.compile(r"No module named '([^']+)'")
_NO_ATTR_RE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def _device_unavailable(msg: str, etype: str, m: re.Match, path: str,
                        asked: str | None = None) -> LoadFailure:
    """``asked``: the map_location of the attempt. When it names the missing backend, the
    request failed, not the file: a CPU-saved file loaded with map_location='cuda'."""
    backend, index = m.group(1).upper(), m.group(2)
    if asked and asked.split(":")[0].lower() == backend.lower():
        text = (f"You asked for map_location={asked!r}, but this machine has no usable "
                f"{backend} device{' with that index' if index is not None else ''} (none "
                "present, or torch built without it). It is the request that fails, not the "
                "file.")
        fixes = [Fix("load to the CPU", {"map_location": "cpu"},
                     code=f"torch.load({path!r}, map_location='cpu')"),
                 Fix("read shapes only, without memory, on the meta device",
                     {"map_location": "meta"})]
        return LoadFailure(DEVICE_UNAVAILABLE, msg, text, fixes, etype,
                           {"backend": backend.lower(), "index": index, "requested": asked})
    fixes = [Fix("map every tensor to the CPU", {"map_location": "cpu"},
                 code=f"torch.load({path!r}, map_location='cpu')")]
    if index is not None:
        count = _DEVICE_COUNT_RE.search(msg)
        have = count.group(1) if count else "fewer"
        text = (f"The file stores tensors on {backend} device {index}, but this machine has "
                f"{have} such device(s). torch puts each tensor back where it was saved "
                "unless map_location says otherwise.")
        if backend == "CUDA":
            fixes.insert(0, Fix("map every tensor to the first GPU", {"map_location": "cuda:0"},
                                code=f"torch.load({path!r}, map_location='cuda:0')"))
    else:
        text = (f"The file was saved from {backend} tensors, and this machine has no usable "
                f"{backend} device (none present, or torch built without it). torch puts "
                "each tensor back where it was saved unless map_location says otherwise.")
    fixes.append(Fix("read shapes only, without memory, on the meta device",
                     {"map_location": "meta"}))
    return LoadFailure(DEVICE_UNAVAILABLE, msg, text, fixes, etype,
                       {"backend": backend.lower(), "index": index})


def _missing_module(msg: str, etype: str, stage: Any) -> LoadFailure:
    m, a = _NO_MODULE_RE.search(msg), _NO_ATTR_RE.search(msg)
    module = m.group(1) if m else (a.group(2) if a else "?")
    if a and not m:
        text = (f"The file pickles a class or function {a.group(1)} from module {module}, "
                "and that module, as installed here, has no such name: the code changed "
                "since the save (renamed or moved).")
        fixes = [Fix(f"install the version of {module} the file was saved with, or add a "
                     "compatible alias for the old name")]
    else:
        why = ("one of the globals you allow-listed lives in it"
               if stage == "allow_globals" else "the file pickles a class or function from it")
        text = (f"Python cannot import module {module}: {why}. The code that defined it "
                "(your training project, or a package) is not on this Python's path; the "
                "load runs in a fresh folder, so the current directory is not on it either.")
        fixes = [Fix(f"add the folder that contains {module.split('.')[0]} to PYTHONPATH "
                     f"(PYTHONPATH=/path/to/project pttui ...), or pip install the package "
                     "that provides it")]
    return LoadFailure(MISSING_MODULE, msg, text, fixes, etype, {"module": module})


def _weights_only(msg: str, etype: str, extra: dict[str, Any], path: str,
                  allowed: list[str]) -> LoadFailure:
    named = _NOT_ALLOWED_RE.findall(msg) + _BUT_GOT_RE.findall(msg)
    blocked_mod = _BLOCKED_MODULE_RE.findall(msg)
    names = [_full_name(n) for n in named] + [n for n, _ in blocked_mod]
    names += sorted(n for n in extra.get("unsafe_globals") or []
                    if n not in names and n not in allowed)
    scan = extra.get("globals_scan") or {}
    # numpy.dtype('f8') also needs its class (numpy.dtypes.Float64DType) allow-listed, which
    # no GLOBAL names, so torch finds out only on the next try; pttui's scan predicts it
    names += [n for n in scan.get("blocked", ()) if n.startswith("numpy.dtypes.")
              and n not in names and n not in allowed]
    classes = _class_globals(names, scan)
    # a file that needs any dangerous global loads only by running its code: no allow-list
    classes["dangerous"] += [n for n in scan.get("dangerous", ()) if n not in classes["dangerous"]]
    harmless, dangerous = classes["harmless"], classes["dangerous"]
    fixes: list[Fix] = []  # for a dangerous file, classify() adds the one way to load it
    if dangerous:
        text = ("weights_only=True refused the file because it needs "
                f"{', '.join(dangerous[:8])}{', ...' if len(dangerous) > 8 else ''}: "
                "globals pttui cannot vouch for (functions or classes whose code would run "
                "with arguments the file chooses). That is how malicious pickles work. "
                "Allow-listing them would run that code too: `pttui fix` exports the "
                "tensors without running anything.")
    elif names:
        text = ("weights_only=True (the default since PyTorch 2.6) only rebuilds tensors "
                f"and plain containers; this file also pickles {', '.join(names)}. "
                "Allow-listing those exact names lets it load without running other code.")
        fixes.append(Fix(f"allow-list {', '.join(harmless)} (plain data classes)",
                         {"allow_globals": harmless}, code=_safe_globals_code(harmless, path)))
        fixes.append(_unsafe_fix(path))
    else:
        text = ("weights_only=True could not rebuild something in this file (an opcode or "
                "object torch's restricted unpickler does not support).")
        fixes.append(_unsafe_fix(path))
    return LoadFailure(WEIGHTS_ONLY, msg, text, fixes, etype, {"globals": classes},
                       _wo_headline(msg))


def _wo_headline(msg: str) -> str:
    """The unpickler's own reason, not the paragraph about PyTorch 2.6 around it."""
    marker = "WeightsUnpickler error:"
    if marker in msg:
        rest = msg.split(marker, 1)[1].strip()
        return _first_line(rest.split(" Please use ")[0]) if rest else ""
    m = _WO_REASON_RE.search(msg)
    return _first_line(m.group(0)) if m else ""


def _full_name(name: str) -> str:
    """torch prints ``builtins.eval`` as ``eval``; put the module back."""
    return name if "." in name else f"builtins.{name}"


def _class_globals(names: list[str], scan: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Split refused globals into harmless (on pttui's curated list: safe to allow-list
    whatever arguments the file gives them) and dangerous (everything else, including
    names nobody knows). The scan's own split is not trusted over the curated list: a
    name is dangerous when either says so."""
    out: dict[str, list[str]] = {"harmless": [], "dangerous": []}
    dangerous_in_scan = set((scan or {}).get("dangerous", ()))
    for name in dict.fromkeys(names):
        if name in dangerous_in_scan or globalscan.classify(name) == "dangerous":
            out["dangerous"].append(name)
        else:
            out["harmless"].append(name)
    return out


def _safe_globals_code(names: list[str], path: str) -> str:
    mods = sorted({n.rsplit(".", 1)[0] for n in names})
    return (f"import {', '.join(mods)}; "
            f"with torch.serialization.safe_globals([{', '.join(names)}]): "
            f"torch.load({path!r})")


# -- failures the parent decides, not torch ----------------------------------------------

def out_of_memory_from_child(msg: str, etype: str, map_location: str,
                             mmap_possible: bool = False) -> LoadFailure:
    where = "GPU" if map_location.startswith("cuda") else "RAM"
    fixes = [Fix("memory-map the file so tensor bytes stay on disk until used",
                 {"mmap": True})] if mmap_possible else []
    if where == "GPU":
        fixes.append(Fix("load to the CPU instead", {"map_location": "cpu"}))
    fixes.append(Fix("read shapes only, without memory, on the meta device",
                     {"map_location": "meta"}))
    return LoadFailure(OUT_OF_MEMORY, msg, (
        f"The load ran out of memory ({where}). A checkpoint needs about its file size in "
        "memory on the target device, more while it is being unpickled."), fixes, etype)


def out_of_memory_precheck(needed: int, available: int, device: str) -> LoadFailure:
    return LoadFailure(OUT_OF_MEMORY, "", (
        f"Not started: the load needs about {humanize.nbytes(needed)} ({needed:,} bytes, the "
        f"file size) on {device}, more than the {humanize.nbytes(available)} available "
        "there. Loading anyway risks the out-of-memory killer taking down more than this "
        "load."), [
        Fix("read shapes only, without memory, on the meta device", {"map_location": "meta"}),
        Fix("try anyway (skip the memory check)", force=True),
    ], None, {"needed": needed, "available": available, "device": device})


def timed_out(seconds: float) -> LoadFailure:
    return LoadFailure(TIMEOUT, "", (
        f"The load did not finish within {seconds:g} s and was stopped. Large files on slow "
        "or network disks take long; so does unpickling millions of small objects."),
        [Fix("try again with a longer timeout")])


def save_failed(message: str, etype: str, dest: str | None) -> LoadFailure:
    """The file loaded, but writing its tensors out failed (disk full, size limit, ...)."""
    where = f" to {dest}" if dest else ""
    text = (f"The checkpoint loaded, but saving its tensors{where} failed: "
            f"{_first_line(message) or etype}. Nothing was saved.")
    return LoadFailure(SAVE_FAILED, message, text,
                       [Fix("free disk space or save somewhere else, then load again")], etype,
                       headline=_first_line(text))


def cancelled() -> LoadFailure:
    return LoadFailure(CANCELLED, "", "The load was cancelled; its process was stopped and "
                       "its memory freed.")


def crashed(returncode: int, stderr_tail: str, killed_by_us: bool) -> LoadFailure:
    """The child died without reporting: a signal (segfault, OOM killer) or an exit."""
    import signal

    tail = strip_ansi(stderr_tail).strip()
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGKILL and not killed_by_us:
            f = out_of_memory_from_child(tail, "SIGKILL", "cpu")
            f.explanation = ("The load process was killed with SIGKILL, almost always by "
                             "the kernel's out-of-memory killer. " + f.explanation)
            f.details = {"signal": name}
            return f
        text = (f"The load process died from signal {name} without reporting back: a crash "
                "inside torch or a native extension the file's classes use.")
        return LoadFailure(CRASHED, tail, text, [], None, {"signal": name})
    text = (f"The load process exited with status {returncode} without reporting back "
            "(code the file ran called exit, or Python failed to start).")
    return LoadFailure(CRASHED, tail, text, [], None, {"returncode": returncode})
