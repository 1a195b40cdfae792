"""What a failed load is: the failure kinds, :class:`Fix` and :class:`LoadFailure`.

Kept apart from the classifier and the builders so the fronts (and load_types) can
use the data classes and the kind names without the regexes and wording around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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


def run_its_code_fix(dangerous: list[str]) -> Fix:
    """The one way to load a file that needs globals pttui cannot vouch for: the sandboxed
    child with weights_only=False, after typed consent. No code to copy: pasted into a
    script, that load would run the same code outside any sandbox."""
    names = ", ".join(dangerous[:4]) + (", ..." if len(dangerous) > 4 else "")
    return Fix(f"only if you made this file yourself: a load that RUNS its code ({names}) "
               "in pttui's sandboxed child, after you type the file's name to agree",
               {"weights_only": False}, unsafe=True)


def without_code_advice(failure: LoadFailure, dangerous: list[str]) -> LoadFailure:
    """For a file that needs a dangerous global: no allow-listing, no add_safe_globals,
    no weights_only=False snippet; the sandboxed, typed-consent load is the only way."""
    if not dangerous:
        return failure
    fixes = [f for f in failure.fixes if not f.unsafe and not f.changes.get("allow_globals")
             and not (f.code and ("weights_only=False" in f.code or "safe_globals" in f.code))]
    fixes.append(run_its_code_fix(dangerous))
    failure.fixes = fixes
    return failure


def _unsafe_fix(path_hint: str = "PATH") -> Fix:
    return Fix(f"load with weights_only=False ({_UNSAFE_NOTE})", {"weights_only": False},
               unsafe=True, code=f"torch.load({path_hint!r}, weights_only=False)")
