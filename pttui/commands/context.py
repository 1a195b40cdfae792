"""The state commands share between lines: the core Session, plus the numbered
suggestions ``apply N`` refers to, and the lookups every command needs (the open
file, the target, the current key map, one key by name).
"""

from __future__ import annotations

import bisect
import difflib
import os
from typing import Any

from pttui.core.compare import Report
from pttui.core.base import Checkpoint, ReadError, TensorMeta
from pttui.core.recipe import quote
from pttui.core.session import Session

_CLOSE_LIMIT = 5000  # keys difflib may scan for "did you mean" (it is quadratic-ish)


class Context:
    """One Session seen through the command language (the shell and the TUI each hold one)."""

    def __init__(self, session: Session | None = None) -> None:
        self.session = session if session is not None else Session()
        self.suggestions: list[Any] = []
        self._suggested_for: tuple = ()
        self._keys: tuple[tuple, list[str]] | None = None

    # -- what is open -------------------------------------------------------------

    def source(self) -> Checkpoint:
        if self.session.source is None:
            raise ReadError("no checkpoint is open; run `open PATH` first")
        return self.session.source

    def target(self) -> Any:
        if self.session.target is None:
            raise ReadError("no model is set; run `model SPEC` first (e.g. model "
                            "torchvision:resnet18)")
        return self.session.target

    def report(self) -> Report:
        self.source()
        self.target()
        report = self.session.analysis(with_suggestions=False).report
        if report is None:
            raise ReadError("the recipe does not apply to this file; `recipe show` and `undo`")
        return report

    def analysis(self) -> Any:
        """The whole analysis (verdict, diagnosis, suggestions) of the open file and model."""
        self.report()
        return self.session.analysis()

    def current(self) -> dict[str, TensorMeta]:
        """The selected container's tensors after the recipe, keyed by their new names."""
        self.source()
        return self.session.current()

    def sorted_keys(self) -> list[str]:
        """The current keys, sorted (cached per recipe state): for prefix lookups."""
        s = self.session
        state = (s.source, s.source.selected if s.source else None, s.recipe)
        old = self._keys[0] if self._keys is not None else None
        if old is None or old[0] is not state[0] or old[1] != state[1] or old[2] is not state[2]:
            self._keys = (state, sorted(s.current()) if s.source is not None else [])
        return self._keys[1]

    def under(self, prefix: str) -> list[str]:
        """Keys equal to ``prefix`` or below it as a dotted path (sorted)."""
        keys = self.sorted_keys()
        if not prefix:
            return list(keys)
        base = prefix.rstrip(".")
        lo = bisect.bisect_left(keys, base)
        out = []
        for k in keys[lo:]:
            if not k.startswith(base):
                break
            if k == base or k.startswith(base + "."):
                out.append(k)
        return out

    def tensor(self, key: str) -> TensorMeta:
        """The current tensor named ``key``; a one-line error that helps when there is none."""
        current = self.current()
        meta = current.get(key)
        if meta is not None:
            return meta
        below = self.under(key)
        if below:
            raise ReadError(f"{quote(key)} is a module holding {len(below)} tensors, not one "
                            f"tensor; try `tree {key}` or `ls {key}`")
        renamed = [new for new, m in current.items() if m.key == key]
        if renamed:
            raise ReadError(f"{quote(key)} is called {quote(renamed[0])} after the recipe; "
                            "use the new name")
        close = self.close_keys(key)
        hint = f"; did you mean {', '.join(quote(c) for c in close)}?" if close else \
            "; `find PATTERN` searches the keys"
        raise ReadError(f"no tensor {quote(key)}{hint}")

    def close_keys(self, key: str, n: int = 3) -> list[str]:
        keys = self.sorted_keys()
        if len(keys) > _CLOSE_LIMIT:
            last = key.rpartition(".")[2]
            keys = [k for k in keys if k.endswith(last)][:_CLOSE_LIMIT]
        return difflib.get_close_matches(key, keys, n=n, cutoff=0.6)

    # -- numbered suggestions -----------------------------------------------------------

    def _state(self) -> tuple:
        s = self.session
        return (s.source, s.target, s.recipe)

    def remember(self, suggestions: list[Any]) -> None:
        """Number these for ``apply N`` (valid until the source, target or recipe change)."""
        self.suggestions = list(suggestions)
        self._suggested_for = self._state()

    def numbered(self) -> list[Any]:
        """The suggestions last listed, if they still describe the session; else []."""
        now = self._state()
        fresh = len(self._suggested_for) == len(now) and all(
            a is b for a, b in zip(self._suggested_for, now))
        return self.suggestions if fresh else []


def container_name(path: tuple[str, ...] | None) -> str:
    return ".".join(path) if path else "(root)"


def find_container(ckpt: Checkpoint, text: str) -> tuple[str, ...]:
    """The container path a user typed (``state_dict``, ``ema.model``, ``(root)``)."""
    for c in ckpt.containers:
        if container_name(c.path) == text or (text == "" and not c.path):
            return c.path
    have = ", ".join(quote(container_name(c.path)) for c in ckpt.containers) or "none"
    raise ReadError(f"no container {quote(text)} in {ckpt.path}; it has: {have}")


def status(ctx: Context) -> dict[str, Any]:
    """The session at a glance (the shell's toolbar, the TUI's status bar, `status`)."""
    s = ctx.session
    src, target, report = s.source, s.target, s.report
    container = None
    if src is not None:
        container = container_name(s.recipe.container if s.recipe.container is not None
                                   else src.selected)
    out: dict[str, Any] = {
        "file": src.path if src is not None else None,
        "format": src.format if src is not None else None,
        "container": container,
        "target": (getattr(target, "label", None) or getattr(target, "spec", None))
        if target is not None else None,
        "target_short": short_target(target) if target is not None else None,
        "coverage": None, "loads": None,
        "recipe": len(s.recipe.ops), "can_undo": s.can_undo, "can_redo": s.can_redo,
    }
    if report is not None:
        k, kt = report.coverage_keys
        out["coverage"] = f"{k}/{kt} keys"
        out["loads"] = "strict" if report.strict_ok else \
            "strict=False" if report.ok_with_accepted else "no"
    return out


def short_target(target: Any) -> str:
    """The model in few characters, for a narrow status line: ``squeezenet1_1``
    for ``torchvision:squeezenet1_1``, ``tiny_vit`` for ``path/targets.py:tiny_vit``,
    ``ref good.pt`` for a reference checkpoint; arguments kept (``(num_classes=10)``)."""
    spec = str(getattr(target, "spec", "") or "")
    label = str(getattr(target, "label", "") or spec)
    args = getattr(target, "args", None) or {}
    if getattr(target, "kind", "") == "reference" or spec.startswith("ref:"):
        return "ref " + os.path.basename(spec.removeprefix("ref:").rstrip("/"))
    name = spec.rpartition(":")[2] if ":" in spec else spec
    if not name:
        return label
    if args:
        name += "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    return name


def readable_path(path: str, command: str, what: str = "a checkpoint") -> str:
    """``path`` with ``~`` expanded, or a one-line ReadError when there is nothing to read
    there: no path at all (``open ''``), or a device, FIFO or socket (``/dev/zero``),
    which a reader would take for an empty or endless file."""
    from pttui.core.target import special_file

    if not path.strip():
        raise ReadError(f"{command}: needs a path to {what} ({command} PATH; Tab completes "
                        "file names)")
    full = os.path.expanduser(path)
    odd = special_file(full)
    if odd:
        raise ReadError(f"{path}: {odd}; {command} needs {what} file")
    return full


def checkpoint_format(path: str) -> str | None:
    """The checkpoint format ``path`` has by its content (``torch-zip``, ...), else None."""
    from pttui.core.read import formats

    try:
        return formats.detect(path)
    except ReadError:
        return None
    except Exception:  # noqa: BLE001 - only a hint for an error message
        return None


def is_binary(path: str) -> bool:
    """Whether the start of ``path`` is no UTF-8 text (NUL bytes, invalid sequences)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(head) - 4  # not just a character cut at the end
    return False
