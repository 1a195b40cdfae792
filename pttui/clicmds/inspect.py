"""``pttui inspect PATH``: what a checkpoint holds, read without running any of it."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from json.encoder import encode_basestring_ascii as _quote

from pttui.core.base import humanize as hz
from pttui.core.base import itemsize_bits
from pttui.core.base import Checkpoint
from pttui.core.read import open_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a checkpoint file, a *.index.json, or a DCP folder")
    p.add_argument("--json", action="store_true", help="print one JSON object (see docs/cli.md)")
    p.add_argument("--select", metavar="PATH.IN.CONTAINER",
                   help="the container to list, e.g. state_dict or model_ema ('' = the root, when it is one)")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="show the key tree N levels deep (default: all)")


def run(args: argparse.Namespace) -> int:
    select = None if args.select is None else tuple(p for p in args.select.split(".") if p)
    gc.disable()  # a short-lived process building many small objects; see reader.py
    ckpt = open_checkpoint(args.path, select)
    if args.json:
        for piece in json_pieces(ckpt):
            sys.stdout.write(piece)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(map(printable, render(ckpt, args.depth))) + "\n")
    return 0


class _NoTensors:
    """The checkpoint as ``Checkpoint.to_json`` sees it, minus the tensor list."""

    tensors: dict = {}

    def __init__(self, ckpt: Checkpoint) -> None:
        self._ckpt = ckpt

    def __getattr__(self, name: str):
        return getattr(self._ckpt, name)


def json_pieces(ckpt: Checkpoint, chunk: int = 1000) -> Iterator[str]:
    """``json.dumps(ckpt.to_json(), separators=(",", ":"))``, in pieces, without a dict per
    tensor: 100,000 tensors print in a quarter less time, with no list of 100,000 dicts,
    and a piece at a time in memory (100 KB: the output comes after the read's peak)."""
    doc = Checkpoint.to_json(_NoTensors(ckpt))  # type: ignore[arg-type]
    mark = f"pttui-tensors-{os.urandom(16).hex()}"  # a file cannot guess it
    doc["tensors"] = mark
    head, tail = json.dumps(doc, separators=(",", ":")).split(_quote(mark), 1)
    first = next(iter(ckpt.tensors.values()), None)
    if first is not None and _tensor_json(first) != json.dumps(first.to_json(),
                                                               separators=(",", ":")):
        encode = lambda t: json.dumps(t.to_json(), separators=(",", ":"))  # noqa: E731
    else:
        encode = _tensor_json  # checked above against TensorMeta.to_json
    yield head + "["
    tensors = iter(ckpt.tensors.values())
    sep = ""
    while piece := ",".join(map(encode, islice(tensors, chunk))):
        yield sep + piece
        sep = ","
    yield "]" + tail


_INT = frozenset({int})
_TAILS: dict[tuple, str] = {}  # (shape, dtype, device) -> the JSON after the key


def _tensor_json(t) -> str:
    """``TensorMeta.to_json`` as compact JSON. Everything after the key depends on
    shape, dtype and device alone, and a file repeats few of those (the benchmark's
    50,000- and 100,000-key files have 5 each): that part is built once per kind."""
    key, shape, dtype, device = t[:4]
    if type(key) is str:
        try:
            tail = _TAILS.get((shape, dtype, device)) or _tail(shape, dtype, device)
        except TypeError:  # an unhashable shape: not from pttui's readers; to_json copes
            tail = None
        if tail is not None:
            return '{"key":' + _quote(key) + tail
    return json.dumps(t.to_json(), separators=(",", ":"))


def _tail(shape, dtype, device) -> str | None:
    if not (type(dtype) is str and type(device) is str and type(shape) is tuple
            and _INT.issuperset(map(type, shape))):
        return None
    nbytes = (math.prod(shape) * itemsize_bits(dtype) + 7) // 8  # TensorMeta.nbytes
    tail = (f',"shape":[{",".join(map(str, shape))}],"dtype":{_quote(dtype)},'
            f'"device":{_quote(device)},"nbytes":{nbytes}}}')
    if len(_TAILS) < 4096:  # a hostile file may make every tensor different
        _TAILS[(shape, dtype, device)] = tail
    return tail


def render(ckpt: Checkpoint, depth: int | None = None) -> list[str]:
    tensors = ckpt.tensors
    lines = [f"{ckpt.path}  ({ckpt.format})"]
    on_disk, by_dtype, groups = storage_totals(tensors)
    as_tensors = sum(t.nbytes for t in tensors.values())
    sel = ".".join(ckpt.selected) if ckpt.selected else "(root)"
    size = f"{hz.nbytes(on_disk)} on disk"
    if as_tensors != on_disk:
        size += f" ({hz.nbytes(as_tensors)} counting each tensor apart)"
    numel, as_names = unique_elements(tensors), sum(t.numel for t in tensors.values())
    elements = f"{hz.count(numel)} elements"
    if numel != as_names:  # tied names: a model counts their parameters once
        elements += f" ({hz.count(as_names)} counting tied names apart)"
    lines.append(f"  {hz.plural(len(tensors), 'tensor')} · {elements} · {size}   "
                 f"container: {sel}")
    if by_dtype:
        lines.append("  dtypes:  " + ", ".join(f"{d} {hz.nbytes(b)}" for d, b in by_dtype.most_common()))
        lines.append("  stored on:  " + ", ".join(ckpt.devices))
    lines.extend(shared_lines(groups))
    if len(ckpt.containers) > 1:
        lines.append("  containers:")
        for c in ckpt.containers:
            mark = "*" if c.path == ckpt.selected else " "
            lines.append(f"   {mark} {'.'.join(c.path) or '(root)':<28} {c.kind:<11} "
                         f"{hz.plural(len(c.tensors), 'tensor'):>14}  {hz.count(c.params):>7} elements")
    g = ckpt.globals
    if g.allowed or g.blocked or g.dangerous:
        lines.append(f"  globals:  {len(g.allowed)} allowed by weights_only, "
                     f"{len(g.blocked)} blocked, {len(g.dangerous)} dangerous")
        for name in g.dangerous:
            lines.append(f"    DANGEROUS  {printable(name)}  (a full load would run or import "
                         "this)")
        for call in g.calls:
            lines.append(f"    a full load calls  {call}")
        for name in g.blocked:
            lines.append(f"    blocked    {name}")
    for key, value in ckpt.other.items():
        text = json.dumps(value, default=str, ensure_ascii=False)
        lines.append(f"  {key} = {text if len(text) <= 100 else text[:99] + '…'}")
    for note in ckpt.notes:
        lines.append(f"  note: {note}")
    lines.append("")
    lines.extend(tree_lines(tensors, depth))
    return lines


def unique_elements(tensors) -> int:
    """Elements with tied names counted once (one storage, offset, shape, stride, dtype),
    as ``sum(p.numel() for p in model.parameters())`` counts them."""
    seen: set = set()
    total = 0
    for t in tensors.values():
        if t.storage is not None:
            ident = (t.storage, t.storage_offset, t.shape, t.stride, t.dtype)
            if ident in seen:
                continue
            seen.add(ident)
        total += t.numel
    return total


def storage_totals(tensors) -> tuple[int, Counter[str], list[list]]:
    """Bytes on disk (each storage once: tied weights and views are not counted twice),
    those bytes by dtype, and the groups of tensors that share a storage."""
    members: dict = {}  # StorageRef (one per storage and file) -> its tensors
    total = 0
    by_dtype: Counter[str] = Counter()
    for t in tensors.values():
        ref = t.storage
        group = members.get(ref) if ref is not None else None
        if group is not None:
            group.append(t)
            continue
        n = ref.nbytes if ref is not None else t.nbytes  # no storage (meta, DCP): its own
        if ref is not None:
            members[ref] = [t]
        total += n
        by_dtype[t.dtype] += n
    return total, by_dtype, [g for g in members.values() if len(g) > 1]


_MAX_SHARED_LINES = 12


def shared_lines(groups: list[list]) -> list[str]:
    """``tied: b.weight = a.weight`` for names of one tensor (same storage, offset, shape,
    stride, dtype); ``shared storage: ...`` for different views of one storage."""
    out: list[str] = []
    for group in groups:
        same: dict[tuple, list[str]] = {}
        for t in group:
            stride = tuple(t.stride) if t.stride is not None else None
            same.setdefault((t.storage_offset, tuple(t.shape), stride, t.dtype), []).append(t.key)
        for names in same.values():
            if len(names) > 1:
                out.append(f"  tied:  {' = '.join(names[1:])} = {names[0]}")
        if len(same) > 1:
            firsts = [names[0] for names in same.values()]
            shown = ", ".join(firsts[:6]) + (f", … ({len(firsts)} views)" if len(firsts) > 6
                                              else "")
            out.append(f"  shared storage:  {shown} (views of one "
                       f"{hz.nbytes(group[0].storage.nbytes)} storage)")
    if len(out) > _MAX_SHARED_LINES:
        more = len(out) - _MAX_SHARED_LINES + 1
        out = out[:_MAX_SHARED_LINES - 1] + [f"  … and {more} more tied or shared groups"]
    return out


printable = hz.printable  # keys as the terminal should show them


def tree_lines(tensors, depth: int | None = None) -> list[str]:
    from pttui.core.read import build_tree, walk  # only the text view needs the tree

    rows = []
    for level, e in walk(build_tree(tensors), depth):
        label = "  " * level + e.label
        n, t = e.node, e.node.tensor
        if t is not None and not n.children:
            desc = f"{hz.shape(t.shape):<20} {t.dtype:<9} {t.device}"
            if e.repeat > 1:
                desc += f"   ×{e.repeat}"
        else:
            reps = f"{e.repeat} × " if e.repeat > 1 else ""
            desc = (f"{reps}{hz.plural(n.count, 'tensor')}, {hz.count(n.params)} elements, "
                    f"{hz.nbytes(n.nbytes)}")
        rows.append((label, desc))
    width = min(60, max((len(label) for label, _ in rows), default=0))
    return [f"{label:<{width}}  {desc}" for label, desc in rows]
