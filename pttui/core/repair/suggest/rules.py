"""Rule inference: the general rename rule behind one (old, new) key pair, and which
pairs a rule explains.

Split from suggest.py's structural pairing: rules are inferred from a sample of the
pairs, then checked on all of them with one regex pass over the joined key names.
"""

from __future__ import annotations

import re
from collections import Counter

from pttui.core.repair.suggest.apply import _joined_regex

_RULE_SAMPLE = 2_000  # pairs a rule is inferred from (then checked on all pairs)


def _candidate_rules(pairs: list[tuple[str, str]], top: int = 8) -> list[tuple[str, str]]:
    """The rules that explain most of a sample of the pairs, most common first."""
    step = max(1, len(pairs) // _RULE_SAMPLE)
    counts: Counter[tuple[str, str]] = Counter()
    for u, m in pairs[::step]:
        rule = rule_for(u, m)
        if rule is not None:
            counts[rule] += 1
    return [rule for rule, _ in counts.most_common(top)]


def explains(pattern: str, repl: str, pairs: list[tuple[str, str]]) -> list[int]:
    """Indices of the pairs ``pattern`` -> ``repl`` turns into each other (one pass)."""
    olds = [u for u, _ in pairs]
    joined = "\n".join(olds)
    if joined.count("\n") == len(olds) - 1:
        new = _joined_regex(pattern).sub(repl, joined).split("\n")
        if len(new) == len(olds):
            return [i for i, (n, (_, m)) in enumerate(zip(new, pairs)) if n == m]
    rx = re.compile(pattern)
    return [i for i, (u, m) in enumerate(pairs) if rx.sub(repl, u) == m]


def rule_for(u: str, m: str) -> tuple[str, str] | None:
    """The rename of the span where ``u`` and ``m`` differ (whole components), with the
    numbers that carry over generalised: ``layer1.0.conv1_BN.weight`` ->
    ``layer1.0.bn1.weight`` gives ``conv(\\d+)_BN`` -> ``bn\\g<1>``."""
    up, mp = u.split("."), m.split(".")
    i = 0
    while i < min(len(up), len(mp)) and up[i] == mp[i]:
        i += 1
    j = 0
    while j < min(len(up), len(mp)) - i and up[-1 - j] == mp[-1 - j]:
        j += 1
    src = ".".join(up[i:len(up) - j])
    dst = ".".join(mp[i:len(mp) - j])
    if not src or "\n" in src or "\n" in dst:
        return None
    src_runs = [(d.start(), d.end(), d.group()) for d in re.finditer(r"\d+", src)]
    # numbers in dst that repeat a number of src, in order, become back-references
    carried: dict[int, int] = {}  # index into src_runs -> group number
    repl, pos, nxt = "", 0, 0
    for d in re.finditer(r"\d+", dst):
        k = next((x for x in range(nxt, len(src_runs)) if src_runs[x][2] == d.group()), None)
        repl += dst[pos:d.start()].replace("\\", "\\\\")
        if k is None:
            repl += d.group()
        else:
            carried[k] = len(carried) + 1
            repl += f"\\g<{carried[k]}>"
            nxt = k + 1
        pos = d.end()
    repl += dst[pos:].replace("\\", "\\\\")
    pattern, pos = "", 0
    for x, (s, e, text) in enumerate(src_runs):
        pattern += re.escape(src[pos:s]) + (r"(\d+)" if x in carried else text)
        pos = e
    pattern += re.escape(src[pos:])
    return r"(?:(?<=\.)|^)" + pattern + r"(?=\.|$)", repl  # explains checks it


def _readable(pattern: str, repl: str) -> str:
    r"""`(?:(?<=\.)|^)conv(\d+)_BN(?=\.|$)`, `bn\g<1>` reads as `convN_BN` -> `bnN`."""
    src = re.sub(r"^\(\?:\(\?<=\\\.\)\|\^\)|^\(\?<=\\\.\)|\(\?=\\\.\|\$\)$", "", pattern)
    n = src.count(r"(\d+)")
    for g in range(1, n + 1):
        src = src.replace(r"(\d+)", "N" if n == 1 else f"N{g}", 1)
    src = re.sub(r"\\(.)", r"\1", src)
    dst = re.sub(r"\\g<(\d+)>", lambda mm: "N" if n == 1 else f"N{mm.group(1)}", repl)
    return f"`{src}` -> `{dst.replace(chr(92) * 2, chr(92))}`"
