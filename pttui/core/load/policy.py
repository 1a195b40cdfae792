"""What a load is asked to do (:class:`LoadPolicy`) and what it gave (:class:`LoadResult`).

Plain values shared by the CLI, the shell, the TUI and the recipe, kept apart from
the process machinery in :mod:`pttui.core.load.attempt`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pttui.core.read.pickle import globalscan
from pttui.core.load import UNSAFE_FLAG
from pttui.core.load import failures as lf
from pttui.core.load.failures import Fix, LoadFailure

_MAP_RE = re.compile(r"^(auto|keep|cpu|meta|cuda|cuda:\d+)$")
_GLOBAL_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


@dataclass(frozen=True, slots=True)
class LoadPolicy:
    """How to call ``torch.load``.

    ``map_location``: ``auto`` (cuda if torch sees one, else cpu), ``cpu``, ``cuda``,
    ``cuda:N``, ``meta`` (shapes only, no memory) or ``keep`` (None: where the file
    says, which reproduces the original failure). ``allow_globals`` are
    ``module.Name`` strings the child imports and passes to
    ``torch.serialization.safe_globals``; importing runs that module, which is
    why only names the user chose go here. ``mmap`` None: on for torch zip files
    whose records are stored uncompressed (as torch.save writes them).
    """

    weights_only: bool = True
    allow_globals: tuple[str, ...] = ()
    map_location: str = "auto"
    mmap: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_globals", tuple(self.allow_globals))
        if not _MAP_RE.match(self.map_location):
            raise ValueError(f"map_location {self.map_location!r} is not one of auto, keep, "
                             "cpu, meta, cuda, cuda:N")
        for name in self.allow_globals:
            if not _GLOBAL_RE.match(name):
                raise ValueError(f"allowed global {name!r} must be a dotted 'module.Name' "
                                 "(for example argparse.Namespace)")
            if globalscan.classify(name) == "dangerous":
                raise ValueError(
                    f"{name} is not on pttui's list of data classes safe to allow-list "
                    "(docs/security.md): allow-listed, the file could call it with "
                    "arguments of its choosing; a file you made yourself loads only by "
                    "running its code, in pttui's sandboxed child after you agree "
                    "(pttui load FILE --unsafe-weights-only-false)")

    def with_changes(self, changes: dict[str, Any]) -> LoadPolicy:
        """A copy with ``changes`` applied; ``allow_globals`` are added, not replaced."""
        changes = dict(changes)
        if "allow_globals" in changes:
            extra = [g for g in changes["allow_globals"] if g not in self.allow_globals]
            changes["allow_globals"] = (*self.allow_globals, *extra)
        return replace(self, **changes)

    def apply(self, fix: Fix) -> LoadPolicy:
        return self.with_changes(fix.changes)

    def load_options(self) -> list[str]:
        """The ``load`` options that ask for this policy, the same words on pttui's
        command line and in the shell (``weights_only=False`` has its own flag, which
        only the command line takes)."""
        words: list[str] = []
        if self.map_location != "auto":
            words += ["--map-location", self.map_location]
        for name in self.allow_globals:
            words += ["--allow", name]
        if self.mmap is not None:
            words.append("--mmap" if self.mmap else "--no-mmap")
        return words

    def fix_options(self, fix: Fix, force: bool = False) -> list[str] | None:
        """The ``load`` options that try ``fix`` on top of this policy, for the fix lines
        of pttui load and of the shell's load; None when no option can (a fix with no
        changes, or a change this policy refuses)."""
        if not fix.changes and not fix.force:
            return None
        try:
            want = self.with_changes(fix.changes)
        except (TypeError, ValueError):
            return None
        words = want.load_options()
        if not want.weights_only:
            words.append(UNSAFE_FLAG)
        if fix.force or force:
            words.append("--force")
        return words

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["allow_globals"] = list(self.allow_globals)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoadPolicy:
        return cls(bool(d.get("weights_only", True)), tuple(d.get("allow_globals") or ()),
                   d.get("map_location", "auto"), d.get("mmap"))


@dataclass(slots=True)
class LoadResult:
    """What one attempt gave: a summary of the loaded object, or a classified failure.

    ``policy`` is the effective one (auto resolved, as the child really called
    torch). ``seconds`` is wall time including Python start and the torch import;
    ``peak_rss`` is the child's peak resident memory, that import included.
    """

    ok: bool
    path: str
    format: str
    policy: dict[str, Any]
    summary: dict[str, Any] | None = None
    failure: LoadFailure | None = None
    seconds: float = 0.0
    load_seconds: float | None = None
    peak_rss: int | None = None
    warnings: list[str] = field(default_factory=list)
    saved: dict[str, Any] | None = None  # the .safetensors written: path, tensors, bytes, ...

    @property
    def kind(self) -> str:
        return "ok" if self.ok else (self.failure.kind if self.failure else lf.LOAD_ERROR)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "kind": self.kind, "format": self.format,
                "policy": self.policy, "summary": self.summary,
                "failure": self.failure.to_json() if self.failure else None,
                "seconds": self.seconds, "load_seconds": self.load_seconds,
                "peak_rss": self.peak_rss, "warnings": self.warnings, "saved": self.saved}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoadResult:
        failure = LoadFailure.from_json(d["failure"]) if d.get("failure") else None
        return cls(d["ok"], d["path"], d["format"], d["policy"], d.get("summary"), failure,
                   d.get("seconds", 0.0), d.get("load_seconds"), d.get("peak_rss"),
                   list(d.get("warnings") or []), d.get("saved"))
