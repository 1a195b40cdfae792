"""Turn what a failed ``torch.load`` child reported into words an ML engineer can act on.

torch's messages are accurate but aimed at torch developers ("PytorchStreamReader
failed locating file data.pkl"); each :class:`LoadFailure` keeps the original
message and adds a plain explanation plus the :class:`Fix` objects that apply,
each a concrete :class:`~pttui.core.load.attempt.LoadPolicy` change the fronts can
offer as a button, a shell command or a ``pttui load`` command line.

This module classifies the child's error; the data classes live in
:mod:`pttui.core.load.failure_model` and the wording of each kind in
:mod:`pttui.core.load.failure_builders`, both re-exported here.
"""

from __future__ import annotations

import re
from typing import Any

from pttui.core.load.failure_builders import (
    _NO_ATTR_RE,
    _NO_MODULE_RE,
    _device_unavailable,
    _missing_module,
    _weights_only,
    out_of_memory_from_child,
    save_failed,
)
from pttui.core.load.failure_builders import cancelled, crashed, timed_out  # noqa: F401
from pttui.core.load.failure_builders import out_of_memory_precheck  # noqa: F401
from pttui.core.load.failure_model import (
    CORRUPT_ZIP,
    LEGACY_TAR,
    LOAD_ERROR,
    MISSING_DATA_PKL,
    MMAP_UNSUPPORTED,
    NOT_A_CHECKPOINT,
    SAFETENSORS_INVALID,
    TORCHSCRIPT,
    Fix,
    LoadFailure,
    _first_line,
    _unsafe_fix,
    strip_ansi,
    without_code_advice,
)
from pttui.core.load.failure_model import CANCELLED, CRASHED, KINDS, TIMEOUT  # noqa: F401
from pttui.core.load.failure_model import DEVICE_UNAVAILABLE, MISSING_MODULE  # noqa: F401
from pttui.core.load.failure_model import OUT_OF_MEMORY, SAVE_FAILED, WEIGHTS_ONLY  # noqa: F401

# -- classification ------------------------------------------------------------------

_DEVICE_RE = re.compile(r"Attempting to deserialize object on (?:a )?(\w+) device(?: (\d+))?")
_OOM_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory",
                "std::bad_alloc")
_CORRUPT_MARKERS = ("PytorchStreamReader failed", "invalid header or archive is corrupted",
                    "failed finding central directory", "file read failed")


def classify(error: dict[str, Any], *, fmt: str, path: str,
             not_checkpoint: str | None = None, damage: str | None = None,
             extra: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
             compressed: int = 0) -> LoadFailure:
    """:func:`_classify`, then no advice that would run code the file needs (see
    ``without_code_advice``) when pttui's scan, or torch's refusal, names a dangerous
    global: one rule for every kind of failure such a file can have."""
    failure = _classify(error, fmt=fmt, path=path, not_checkpoint=not_checkpoint,
                        damage=damage, extra=extra, policy=policy, compressed=compressed)
    scan = (extra or {}).get("globals_scan") or {}
    named = (failure.details.get("globals") or {}).get("dangerous") or []
    return without_code_advice(failure, list(dict.fromkeys([*named, *scan.get("dangerous", ())])))


def _classify(error: dict[str, Any], *, fmt: str, path: str,
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
