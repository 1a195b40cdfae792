"""Turn what a failed ``torch.load`` child reported into words an ML engineer can act on.

torch's messages are accurate but aimed at torch developers ("PytorchStreamReader
failed locating file data.pkl"); each :class:`LoadFailure` keeps the original
message and adds a plain explanation plus the :class:`Fix` objects that apply,
each a concrete :class:`~pttui.core.loading.LoadPolicy` change the fronts can
offer as a button, a shell command or a ``pttui load`` command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pttui.core import globalscan, humanize

DEVICE_UNAVAILABLE = "device_unavailable"
WEIGHTS_ONLY = "weights_only_blocked"
TORCHSCRIPT = "torchscript"
LEGACY_TAR = "legacy_tar"
CORRUPT_ZIP = "corrupt_zip"
MISSING_DATA_PKL = "missing_data_pkl"
NOT_A_CHECKPOINT = "not_a_checkpoint"
SAFETENSORS_INVALID = "safetensors_invalid"
MISSING_MODULE = "missing_module"
OUT_OF_MEMORY = "out_of_memory"
MMAP_UNSUPPORTED = "mmap_unsupported"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
CRASHED = "crashed"
SAVE_FAILED = "save_failed"  # it loaded, but its tensors could not be written out
LOAD_ERROR = "load_error"  # anything we do not recognise: the torch message says it all

KINDS: tuple[str, ...] = (
    DEVICE_UNAVAILABLE, WEIGHTS_ONLY, TORCHSCRIPT, LEGACY_TAR, CORRUPT_ZIP, MISSING_DATA_PKL,
    NOT_A_CHECKPOINT, SAFETENSORS_INVALID, MISSING_MODULE, OUT_OF_MEMORY, MMAP_UNSUPPORTED,
    TIMEOUT, CANCELLED, CRASHED, LOAD_ERROR)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_UNSAFE_NOTE = ("weights_only=False runs whatever code the file pickled, with your rights; "
                "only for a file you made yourself or fully trust")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass(frozen=True, slots=True)
class Fix:
    """One thing to try: ``changes`` are LoadPolicy fields (``allow_globals`` adds names).

    ``unsafe`` marks a fix that runs the file's code; ``force`` skips the memory
    pre-check; ``code`` is the equivalent Python for the user's own script.
    """

    description: str
    changes: dict[str, Any] = field(default_factory=dict)
    unsafe: bool = False
    force: bool = False
    code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "changes": self.changes,
                "unsafe": self.unsafe, "force": self.force, "code": self.code}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fix:
        return cls(d["description"], dict(d.get("changes") or {}), bool(d.get("unsafe")),
                   bool(d.get("force")), d.get("code"))


@dataclass(slots=True)
class LoadFailure:
    """A classified failure: ``message`` is torch's own text, ANSI codes stripped."""

    kind: str
    message: str
    explanation: str
    fixes: list[Fix] = field(default_factory=list)
    error_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    headline: str = ""  # the one line of torch's message worth showing first

    def __post_init__(self) -> None:
        if not self.headline:
            self.headline = _first_line(self.message) or _first_line(self.explanation)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "explanation": self.explanation,
                "fixes": [f.to_json() for f in self.fixes], "error_type": self.error_type,
                "details": self.details, "headline": self.headline}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoadFailure:
        return cls(d["kind"], d.get("message", ""), d.get("explanation", ""),
                   [Fix.from_json(f) for f in d.get("fixes", [])], d.get("error_type"),
                   dict(d.get("details") or {}), d.get("headline", ""))


def _first_line(text: str, limit: int = 200) -> str:
    """The first line, cut to its first sentence when long (torch's sentences run on)."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    cut = line.find(". ")
    if len(line) > 120 and cut > 0:
        line = line[:cut + 1]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _unsafe_fix(path_hint: str = "PATH") -> Fix:
    return Fix(f"load with weights_only=False ({_UNSAFE_NOTE})", {"weights_only": False},
               unsafe=True, code=f"torch.load({path_hint!r}, weights_only=False)")


# -- classification ------------------------------------------------------------------

_DEVICE_RE = re.compile(r"Attempting to deserialize object on (?:a )?(\w+) device(?: (\d+))?")
_DEVICE_COUNT_RE = re.compile(r"device_count\(\) is (\d+)")
_NOT_ALLOWED_RE = re.compile(r"GLOBAL (\S+) was not an allowed global by default")
_BLOCKED_MODULE_RE = re.compile(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked")
_BUT_GOT_RE = re.compile(r"but got <class '([\w.]+)'>")
_WO_REASON_RE = re.compile(r"Trying to load unsupported GLOBAL [^\n]*|Unsupported operand \d+")
_NO_MODULE_RE = re.compile(r"No module named '([^']+)'")
_NO_ATTR_RE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")
_OOM_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory",
                "std::bad_alloc")
_CORRUPT_MARKERS = ("PytorchStreamReader failed", "invalid header or archive is corrupted",
                    "failed finding central directory", "file read failed")


def classify(error: dict[str, Any], *, fmt: str, path: str,
             not_checkpoint: str | None = None, damage: str | None = None,
             extra: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
             compressed: int = 0) -> LoadFailure:
    """Classify the child's ``error`` ({"type", "message", "stage"}) for a file of ``fmt``.

    ``not_checkpoint`` is pttui's own description when the file is no checkpoint at
    all (text, empty, .npy, ...), ``damage`` what it found broken in a torch zip
    (torch's own message for that can be a bare "Invalid argument"); ``extra``
    carries what the child found out beyond the message (every unsafe global,
    pttui's own globals scan); ``policy`` is the effective policy of the attempt
    (LoadPolicy fields, auto resolved); ``compressed`` counts zip records another
    tool stored compressed (torch's mmap cannot read those).
    """
    policy = policy or {}
    etype = str(error.get("type") or "Exception")
    msg = strip_ansi(str(error.get("message") or "")).strip()
    extra = extra or {}
    low = msg.lower()

    def fail(kind: str, explanation: str, fixes: list[Fix] | None = None) -> LoadFailure:
        return LoadFailure(kind, msg, explanation, fixes or [], etype)

    if error.get("stage") == "save":
        return save_failed(msg, etype, None)
    if etype in ("MemoryError", "OutOfMemoryError") or any(m in low for m in _OOM_MARKERS):
        can_mmap = fmt == "torch-zip" and not policy.get("mmap")
        return out_of_memory_from_child(msg, etype, str(policy.get("map_location", "cpu")),
                                        mmap_possible=can_mmap)
    if not_checkpoint is not None:  # torch's message about it would only mislead
        what = f"{not_checkpoint[:1].upper()}{not_checkpoint[1:]}."
        return LoadFailure(NOT_A_CHECKPOINT, msg, what, [], etype, headline=_first_line(what))
    if etype == "ModuleNotFoundError" or _NO_MODULE_RE.search(msg) or _NO_ATTR_RE.search(msg):
        return _missing_module(msg, etype, error.get("stage"))
    m = _DEVICE_RE.search(msg)
    if m:
        asked = policy.get("map_location")
        return _device_unavailable(msg, etype, m, path,
                                   asked if isinstance(asked, str) else None)
    if "TorchScript archive" in msg or "did you mean to use torch.jit.load" in msg:
        return fail(TORCHSCRIPT, (
            "This is a TorchScript archive (torch.jit.save): a compiled program plus its "
            "weights, not a pickled checkpoint. torch.load with weights_only=True refuses it."),
            [Fix("load it with torch.jit.load (it runs the archive's TorchScript code, which "
                 "is sandboxed far more than a pickle); model.state_dict() then gives plain "
                 "weights", code=f"torch.jit.load({path!r}, map_location='cpu')")])
    if "legacy .tar format" in msg or fmt == "torch-legacy-tar":
        return fail(LEGACY_TAR, (
            "This file uses the tar format of PyTorch 0.1-0.3. weights_only=True cannot read "
            "it, and modern torch reads it only through the full unpickler. pttui's reader "
            "lists its tensors (names, shapes, dtypes) without running it."), [
            _unsafe_fix(path),
            Fix("or re-save it as a modern checkpoint with an old PyTorch you trust: "
                "torch.save(torch.load(f), 'new.pt')")])
    if "failed locating file data.pkl" in msg:
        return fail(MISSING_DATA_PKL, (
            "The zip archive has no data.pkl, the record torch writes last: the save "
            "crashed or was interrupted (disk full, killed job), so the object tree is "
            "gone. The tensor records may still be there, but nothing says which is which."),
            [Fix("re-save from the source, or fetch the file again; compare its size and "
                 "checksum with the original")])
    bad_opcode = _not_an_opcode(msg)
    if any(m in msg for m in _CORRUPT_MARKERS) or damage or bad_opcode is not None:
        if damage:
            why = (" torch's error comes from reading those bytes." if "CRC" in damage else
                   " Most often the file is truncated (an interrupted copy or download, or a "
                   "save that never finished).")
            text = (f"The file is damaged: {damage}.{why} No loading option (weights_only="
                    "False included) can fix that.")
        elif bad_opcode is not None:
            text = (f"The file is damaged: its pickle holds byte {bad_opcode}, which is no "
                    "pickle opcode at all (torch calls it an 'unsupported operand'). No "
                    "loading option (weights_only=False included) can read a damaged pickle.")
        else:
            text = ("The zip container is damaged: most often the file is truncated (an "
                    "interrupted copy or download, or a save that never finished).")
        fixes = [Fix("copy or download the file again and compare its size and checksum "
                     "with the original; a damaged file cannot be repaired by loading options")]
        # torch's own first line ("Weights only load failed") would point the wrong way
        torch_says = any(m in msg for m in _CORRUPT_MARKERS)
        headline = _first_line(text) if not torch_says else ""
        return LoadFailure(CORRUPT_ZIP, msg, text, fixes, etype, headline=headline)
    if fmt == "safetensors" or etype == "SafetensorError":
        return fail(SAFETENSORS_INVALID, (
            "The file starts like a safetensors file, but the safetensors library rejects "
            "it: the JSON header or the data after it is damaged or truncated."),
            [Fix("download or copy the file again; safetensors files cannot be repaired "
                 "by loading options")])
    if compressed and policy.get("mmap"):
        return fail(MMAP_UNSUPPORTED, (
            f"{compressed} record(s) of this zip are stored compressed: another tool rewrote "
            "the archive (torch.save never compresses). mmap maps the bytes as they lie on "
            "disk, so torch reads compressed data as tensors and fails or gives garbage."),
            [Fix("load without mmap (torch then decompresses each record)", {"mmap": False})])
    if "mmap can only be used" in msg:
        return fail(MMAP_UNSUPPORTED, (
            "mmap works only for files in torch's zip format (PyTorch 1.6+); this file is "
            "in the older pickle format."), [Fix("load without mmap", {"mmap": False})])
    if "Weights only load failed" in msg:
        return _weights_only(msg, etype, extra, path, list(policy.get("allow_globals") or ()))
    return fail(LOAD_ERROR, "torch could not load the file; its message above is all we know.")


_OPERAND_RE = re.compile(r"Unsupported operand (\d+)")


def _not_an_opcode(msg: str) -> int | None:
    """The byte torch's weights-only unpickler stopped at, when it is no pickle opcode at
    all: the pickle is damaged (a real but unsupported opcode, such as FRAME, is not)."""
    m = _OPERAND_RE.search(msg) if "Weights only load failed" in msg else None
    if m is None:
        return None
    import pickletools  # only for this message

    code = int(m.group(1))
    known = {ord(op.code) for op in pickletools.opcodes}
    return None if code in known else code


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
    harmless, trust, dangerous = (classes[k] for k in ("harmless", "needs_trust", "dangerous"))
    fixes: list[Fix] = []
    if dangerous:
        text = ("weights_only=True refused the file because it references "
                f"{', '.join(dangerous)}: functions that can run commands or touch files. "
                "That is how malicious pickles work. Do not load it unless you made it "
                "yourself.")
    elif names:
        text = ("weights_only=True (the default since PyTorch 2.6) only rebuilds tensors "
                f"and plain containers; this file also pickles {', '.join(names)}. "
                "Allow-listing those exact names lets it load without running other code.")
        if harmless and not trust:
            fixes.append(Fix(f"allow-list {', '.join(harmless)} (plain data classes)",
                             {"allow_globals": harmless},
                             code=_safe_globals_code(harmless, path)))
        elif harmless or trust:
            allow = harmless + trust
            fixes.append(Fix(f"allow-list {', '.join(allow)}; this imports module(s) "
                             f"{', '.join(sorted({n.rsplit('.', 1)[0] for n in trust}))}, "
                             "which runs their top-level code: do it if you trust that code",
                             {"allow_globals": allow}, code=_safe_globals_code(allow, path)))
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
    """Split blocked globals into harmless / needs_trust (imports user code) / dangerous.

    pttui's own scan knows which globals the pickle *calls*; without it, treat every
    name as called, which is the cautious reading.
    """
    out: dict[str, list[str]] = {"harmless": [], "needs_trust": [], "dangerous": []}
    scan = scan or {}
    for name in dict.fromkeys(names):
        if name in scan.get("dangerous", ()):
            cls = "dangerous"
        elif name in scan.get("blocked", ()) or name in scan.get("allowed", ()):
            cls = "blocked"
        else:
            cls = globalscan.classify(name, called=True)
        if cls == "dangerous":
            out["dangerous"].append(name)
        elif name in globalscan.HARMLESS or name.startswith(("numpy.", "torch.", "argparse.",
                                                              "collections.", "omegaconf.")):
            out["harmless"].append(name)
        else:
            out["needs_trust"].append(name)
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
