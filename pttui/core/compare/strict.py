"""Compare checkpoint metadata with a Target: what ``load_state_dict`` would say, before
loading anything, plus plain-words diagnoses of why it would fail.

Everything works on key -> TensorMeta maps with dict and set operations, so 100,000
keys compare in well under a second, and recipe previews cost no I/O.
"""

from __future__ import annotations

import itertools
import operator
import re
from math import prod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pttui.core.base.meta import TensorMeta
from pttui.core.base.nogc import gc_paused

TYPE_CHECKING = False
if TYPE_CHECKING:  # targets imports inspect, difflib and hashlib: not needed to compare
    from pttui.core.target.targets import Target

__all__ = ["BENIGN_NAMES", "UNKNOWN", "DtypeDiff", "Report", "ShapeMismatch", "compare",
           "expand_group", "group_keys"]

# Keys that are harmless when missing or unexpected: counters, derived index or
# frequency tables, causal masks, profiler leftovers (thop's total_ops).
BENIGN_NAMES = frozenset({"num_batches_tracked", "position_ids", "inv_freq", "masked_bias",
                          "relative_position_index", "total_ops", "total_params", "_metadata"})
UNKNOWN = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()
_NO_SHAPE_CHECK = ("extra_state", "lazy")  # torch skips the size check for these
_SHAPE, _DTYPE = operator.itemgetter(1), operator.itemgetter(2)  # TensorMeta fields


@dataclass
class ShapeMismatch:
    key: str
    checkpoint_shape: tuple
    model_shape: tuple


@dataclass
class DtypeDiff:
    key: str
    checkpoint_dtype: str
    model_dtype: str


@dataclass
class Report:
    """What a strict ``load_state_dict`` would report, and which parts of it are harmless."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not the model
    shape_mismatch: list[ShapeMismatch] = field(default_factory=list)
    dtype_diff: list[DtypeDiff] = field(default_factory=list)  # load_state_dict casts these
    benign_missing: list[str] = field(default_factory=list)
    benign_unexpected: list[str] = field(default_factory=list)
    tied_missing: list[str] = field(default_factory=list)  # missing, but a tied twin loads
    auto_filled: list[str] = field(default_factory=list)  # absent, torch fills them (BN)
    accepted_missing: list[str] = field(default_factory=list)
    keys_ok: int = 0
    keys_total: int = 0
    elements_ok: int = 0
    elements_total: int = 0

    @property
    def coverage_keys(self) -> tuple[int, int]:
        return self.keys_ok, self.keys_total

    @property
    def coverage_params(self) -> tuple[int, int]:
        return self.elements_ok, self.elements_total

    @property
    def strict_ok(self) -> bool:
        return not self.missing and not self.unexpected and not self.shape_mismatch

    @property
    def ok_with_accepted(self) -> bool:
        return (not self.unexpected and not self.shape_mismatch
                and len(self.accepted_missing) == len(self.missing))

    def to_json(self) -> dict[str, Any]:
        return {
            "strict_ok": self.strict_ok, "ok_with_accepted": self.ok_with_accepted,
            "matched": len(self.matched), "missing": self.missing,
            "unexpected": self.unexpected,
            "shape_mismatch": [{"key": m.key, "checkpoint_shape": list(m.checkpoint_shape),
                                "model_shape": list(m.model_shape)}
                               for m in self.shape_mismatch],
            "dtype_diff": [{"key": d.key, "checkpoint_dtype": d.checkpoint_dtype,
                            "model_dtype": d.model_dtype} for d in self.dtype_diff],
            "benign_missing": self.benign_missing, "benign_unexpected": self.benign_unexpected,
            "tied_missing": self.tied_missing, "auto_filled": self.auto_filled,
            "accepted_missing": self.accepted_missing,
            "coverage": {"keys": list(self.coverage_keys),
                         "params": list(self.coverage_params)},
        }


@gc_paused
def compare(tensors: Mapping[str, TensorMeta], target: Target,
            accepted_missing: Iterable[str] = (), ckpt_metadata: Any = UNKNOWN) -> Report:
    """Compare like ``load_state_dict(strict=True)`` would, on metadata only.

    ``ckpt_metadata`` is the checkpoint's ``_metadata`` (``Checkpoint.state_metadata``;
    None when it has none, as safetensors files): torch then fills a missing BatchNorm
    ``num_batches_tracked`` itself. Left UNKNOWN, such a key counts as missing.

    A tied alias the checkpoint lacks (``head.weight`` tied to ``emb.weight``, saved
    once) is still *missing* to a strict load, but it loads through its twin: it is
    listed in ``tied_missing`` and counts as covered (keys and elements).
    """
    exp = target.tensors
    rep = Report(keys_total=len(exp))
    info = _target_info(target)
    missing = [k for k in exp if k not in tensors]
    matched = [k for k in exp if k in tensors] if missing else list(exp)
    if missing and target.auto_fill:
        fill = target.auto_fill
        rep.auto_filled = [k for k in missing if k in fill and _fills(k, ckpt_metadata)]
        if rep.auto_filled:
            filled = set(rep.auto_filled)
            missing = [k for k in missing if k not in filled]
    rep.matched, rep.missing = matched, missing
    # shapes and dtypes side by side as lists: equal lists (the common case) compare in C
    have = list(map(tensors.__getitem__, matched))
    want = list(exp.values()) if len(matched) == len(exp) else list(map(exp.__getitem__,
                                                                        matched))
    hs, ws = list(map(_SHAPE, have)), list(map(_SHAPE, want))
    if hs != ws:
        for key, h, w, x, y in zip(matched, have, want, hs, ws):
            if x != y and not _shape_ok(x, y, w.kind):
                rep.shape_mismatch.append(ShapeMismatch(key, tuple(x), tuple(y)))
    hd, wd = list(map(_DTYPE, have)), list(map(_DTYPE, want))
    if hd != wd:
        rep.dtype_diff = [DtypeDiff(k, x, y) for k, w, x, y in zip(matched, want, hd, wd)
                          if x != y and w.kind != "extra_state"]
    rep.unexpected = [k for k in tensors if k not in exp] if len(matched) < len(tensors) else []
    rep.benign_missing = [k for k in missing if k in info.benign] if info.benign else []
    nonp = target.non_persistent
    rep.benign_unexpected = ([k for k in rep.unexpected if k in nonp or is_benign(k, tensors[k])]
                             if nonp else _benign_keys(rep.unexpected, tensors))
    tied, aliases = target.tied, info.aliases
    mism = {m.key for m in rep.shape_mismatch}
    if missing and tied:
        for k in missing:  # missing, but a twin of the right shape loads it
            twins = (tied[k],) if k in tied else aliases.get(k, ())
            if any(t in tensors and t not in mism for t in twins):
                rep.tied_missing.append(k)
    if accepted_missing:
        accepted = set(accepted_missing)
        rep.accepted_missing = [k for k in missing if k in accepted]
    # a filled-in counter (num_batches_tracked) counts where its module's weights loaded;
    # a file that matches nothing must not show "20/122 keys" for the counters alone
    loaded = {k.rpartition(".")[0] for k in matched if k not in mism} if rep.auto_filled \
        else set()
    idle = [k for k in rep.auto_filled if k.rpartition(".")[0] not in loaded]
    rep.keys_ok = (len(matched) - len(mism) + len(rep.auto_filled) - len(idle)
                   + len(rep.tied_missing))
    # elements: every key not loaded (missing, or of the wrong shape) subtracts its own
    # elements, unless it is a tied alias (it holds none) or a twin of it loads
    not_ok = set(missing)
    not_ok.update(mism)
    not_ok.update(idle)
    numel = info.numel
    lost = sum(map(numel.__getitem__, not_ok))
    if tied:
        lost -= sum(numel[k] for k in not_ok.intersection(tied))
        lost -= sum(numel[k] for k in not_ok.intersection(aliases)
                    if any(a not in not_ok for a in aliases[k]))
    rep.elements_total = info.total
    rep.elements_ok = info.total - lost
    return rep


class _TargetInfo:
    """What every comparison with one target needs, computed once per target."""

    __slots__ = ("aliases", "benign", "numel", "total")

    def __init__(self, target: Target) -> None:
        self.aliases: dict[str, list[str]] = {}
        for alias, first in target.tied.items():
            self.aliases.setdefault(first, []).append(alias)
        self.numel = {k: prod(m.shape) for k, m in target.tensors.items()}
        tied = target.tied
        self.total = sum(n for k, n in self.numel.items() if k not in tied)
        self.benign = frozenset(_benign_keys(list(target.tensors), target.tensors))


_INFO: list[tuple[Any, Any, int, int, _TargetInfo]] = []  # a few recent targets


def _target_info(target: Target) -> _TargetInfo:
    exp = target.tensors
    for t, e, n, nt, info in _INFO:
        if t is target and e is exp and n == len(exp) and nt == len(target.tied):
            return info
    info = _TargetInfo(target)
    _INFO.insert(0, (target, exp, len(exp), len(target.tied), info))
    del _INFO[4:]
    return info


def _fills(key: str, metadata: Any) -> bool:
    if metadata is UNKNOWN:
        return False
    if not isinstance(metadata, Mapping):
        return True
    entry = metadata.get(key.rpartition(".")[0], {})
    version = entry.get("version") if isinstance(entry, Mapping) else None
    return not isinstance(version, int) or version < 2


def _shape_ok(have: tuple, want: tuple, kind: str) -> bool:
    # torch loads a 1-element 1-D tensor into a 0-d parameter (0.3 -> 0.4 compatibility)
    return kind in _NO_SHAPE_CHECK or tuple(have) == tuple(want) or \
        (tuple(want) == () and tuple(have) == (1,))


def _benign_keys(keys: list[str], metas: Mapping[str, TensorMeta]) -> list[str]:
    """``[k for k in keys if is_benign(k, metas[k])]``, fast on 100,000 keys: one substring
    scan rules out most lists, and the per-key test is inlined."""
    if not keys:
        return []
    joined = "\n".join(keys)
    if "attn.bias" not in joined and not any(n in joined for n in BENIGN_NAMES):
        return []
    names = BENIGN_NAMES
    return [k for k in keys if k[k.rfind(".") + 1:] in names
            or (k.endswith("attn.bias") and is_benign(k, metas.get(k)))]


def is_benign(key: str, meta: TensorMeta | None) -> bool:
    last = key.rpartition(".")[2]
    if last in BENIGN_NAMES:
        return True
    # GPT-2 style causal-mask buffer ``attn.bias`` (1, 1, n, n), never a real bias
    return (key == "attn.bias" or key.endswith(".attn.bias")) and meta is not None \
        and len(meta.shape) == 4


# -- grouping for humans ------------------------------------------------------------

_GROUP = re.compile(r"\{([^{}]*,[^{}]*|\d+\.\.\d+)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_SPLIT = re.compile(r"\.(?![^{]*\})")  # a dot outside braces


def group_keys(keys: list[str], limit: int | None = None) -> list[str]:
    """Collapse keys like a load report: ``layers.{0..31}.attn.q.weight``, ``head.{weight,bias}``.

    Keys differing in one numeric component merge first (runs as ``a..b``, others as
    ``{0,2,5}``), then siblings differing in the last component. Lossless
    (:func:`expand_group` inverts it) for keys without braces or commas; order of
    first appearance. With ``limit``, at most ``limit`` lines, the last ``… and N more``.
    """
    entries: list[tuple[list[str], int]] = [(k.split("."), 1) for k in dict.fromkeys(keys)]
    depth = max((len(p) for p, _ in entries), default=0)
    for pos in range(depth):
        entries = _merge(entries, pos, numeric=True)
    entries = _merge(entries, -1, numeric=False)
    lines = [".".join(p) for p, _ in entries]
    if limit is not None and len(lines) > limit:
        keep = max(limit - 1, 0)
        more = sum(n for _, n in entries[keep:])
        lines = lines[:keep] + [f"… and {more} more"]
    return lines


def _merge(entries: list[tuple[list[str], int]], pos: int, numeric: bool):
    buckets: dict[tuple, list[int]] = {}
    for i, (parts, _) in enumerate(entries):
        if pos >= len(parts) or (pos < 0 and len(parts) < 2):
            continue
        p = parts[pos]
        if numeric and not (p.isdigit() and p.isascii() and str(int(p)) == p):
            continue
        if not numeric and (not p or any(c in p for c in "{},") or p.isdigit()):
            continue
        i_pos = pos % len(parts)
        buckets.setdefault((len(parts), *parts[:i_pos], "\0", *parts[i_pos + 1:]), []).append(i)
    out: list[tuple[list[str], int] | None] = list(entries)
    for members in buckets.values():
        if len(members) < 2:
            continue
        first = members[0]
        parts, _ = entries[first]
        i_pos = pos % len(parts)
        names = [entries[i][0][i_pos] for i in members]
        merged = _render_ints(sorted(int(n) for n in names)) if numeric else \
            "{" + ",".join(names) + "}"
        out[first] = (parts[:i_pos] + [merged] + parts[i_pos + 1:],
                      sum(entries[i][1] for i in members))
        for i in members[1:]:
            out[i] = None
    return [e for e in out if e is not None]


def _render_ints(nums: list[int]) -> str:
    runs: list[str] = []
    for _, grp in itertools.groupby(enumerate(nums), key=lambda t: t[1] - t[0]):
        run = [n for _, n in grp]
        runs += [f"{run[0]}..{run[-1]}"] if len(run) >= 3 else [str(n) for n in run]
    return "{" + ",".join(runs) + "}"


def expand_group(line: str) -> list[str]:
    """The keys one :func:`group_keys` line stands for (the inverse, for selections)."""
    choices: list[list[str]] = []
    for part in _SPLIT.split(line):
        m = _GROUP.fullmatch(part)
        if not m:
            choices.append([part])
            continue
        items: list[str] = []
        for item in m.group(1).split(","):
            r = _RANGE.fullmatch(item)
            items += [str(n) for n in range(int(r[1]), int(r[2]) + 1)] if r else [item]
        choices.append(items)
    return [".".join(p) for p in itertools.product(*choices)]
