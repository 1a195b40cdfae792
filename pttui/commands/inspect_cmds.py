"""Looking at the open checkpoint: open, ls, tree, find, info, containers, status.

Everything here reads metadata only (no tensor bytes, no pickled code run), so it is
instant on a 100 GB file. Keys are the current names, after the recipe, unless
``--raw`` asks for the file as read.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter

from rich.text import Text
from rich.tree import Tree

from pttui.commands import render as rd
from pttui.commands.context import container_name, readable_path, status
from pttui.commands.parser import Arg, Opt, Spec, whole_number
from pttui.commands.registry import Call, command
from pttui.commands.repair_cmds import fit_container
from pttui.core.base import humanize as hz
from pttui.core.compare import compare
from pttui.core.read import build_tree, walk
from pttui.core.base import ReadError, TensorMeta
from pttui.core.guard import open_guarded
from pttui.core.recipe import quote

LIMIT = Opt("--limit", "N", "show at most N rows (0: all; default 100)", convert=whole_number,
            default=100)
RAW = Opt("--raw", help="the keys as stored in the file, before the recipe")
_TREE_ROWS = 400


@command(Spec("open", "open a checkpoint: a file, a *.index.json or a DCP folder",
              (Arg("PATH", "path", help="the checkpoint; nothing in it is executed"),),
              help="Reads the structure only. A new file starts a new recipe; the model "
                   "stays set.", examples=("open runs/best.pt",)))
def open_(call: Call) -> object:
    # read first in a child with a deadline: a crafted pickle must not hang the shell/TUI
    ckpt = open_guarded(readable_path(call.args["path"], "open"), call.cancel)
    call.check_cancel()
    call.session.set_source(ckpt)
    res = call.result(f"opened {ckpt.path} ({ckpt.format})", path=ckpt.path,
                      format=ckpt.format, tensors=len(ckpt.tensors),
                      containers=[c.to_json() for c in ckpt.containers])
    res.changed = True
    tensors = ckpt.tensors
    by_dtype: Counter[str] = Counter()
    for t in tensors.values():
        by_dtype[t.dtype] += t.nbytes
    rows = [("tensors", f"{hz.plural(len(tensors), 'tensor')}, "
             f"{hz.count(sum(t.numel for t in tensors.values()))} elements, "
             f"{hz.nbytes(sum(by_dtype.values()))}"),
            ("container", f"{container_name(ckpt.selected)}"
             + (f"  ({len(ckpt.containers)} candidates: `containers`)"
                if len(ckpt.containers) > 1 else ""))]
    if by_dtype:
        rows.append(("dtypes", ", ".join(f"{d} {hz.nbytes(b)}" for d, b in by_dtype.most_common())))
        rows.append(("stored on", ", ".join(ckpt.devices)))
    g = ckpt.globals
    if g.blocked or g.dangerous:
        rows.append(("globals", Text(f"{len(g.dangerous)} dangerous, {len(g.blocked)} blocked "
                                     "by weights_only (`load` explains)",
                                     style=rd.BAD if g.dangerous else rd.WARN)))
    for key, value in list(ckpt.other.items())[:8]:
        text = json.dumps(value, default=str, ensure_ascii=False)
        rows.append((str(key), text if len(text) <= 80 else text[:79] + "…"))
    res.add(rd.pairs(rows))
    res.add(*(rd.note(f"note: {n}") for n in ckpt.notes))
    if call.session.target is not None:
        fit_container(call, res)
        res.add(rd.verdict(call.ctx.report()), rd.coverage(call.ctx.report()))
    return res


def _view(call: Call) -> dict[str, TensorMeta]:
    if call.args.get("raw"):
        return call.session.recipe.select(call.ctx.source())
    return call.ctx.current()


def _under(tensors: dict[str, TensorMeta], prefix: str | None) -> list[str]:
    """Keys at or below ``prefix`` as a dotted path; a plain prefix if that finds none."""
    if not prefix:
        return list(tensors)
    base = prefix.rstrip(".")
    hits = [k for k in tensors if k == base or k.startswith(base + ".")]
    return hits or [k for k in tensors if k.startswith(prefix)]


def _listing(call: Call, found: list[str], view: dict[str, TensorMeta], what: str) -> object:
    limit = call.args["limit"]
    table, left = rd.tensor_table(((k, view[k]) for k in found), limit)
    res = call.result(f"{hz.plural(len(found), 'tensor')} {what}", keys=found)
    if found:
        res.add(table)
    if left:
        res.add(rd.more(left, "--limit 0 lists all"))
    return res


@command(Spec("ls", "list tensors (key, shape, dtype, device, size)",
              (Arg("PREFIX", "key", optional=True, help="only keys under this dotted path"),),
              (LIMIT, RAW), examples=("ls features.3",)))
def ls(call: Call) -> object:
    view = _view(call)
    prefix = call.args["prefix"]
    found = _under(view, prefix)
    if prefix and not found:
        raise ReadError(f"no key starts with {quote(prefix)}; `tree` shows the structure")
    return _listing(call, found, view, f"under {quote(prefix)}" if prefix else "in view")


@command(Spec("find", "find keys by substring (case-insensitive) or glob (* ? [...])",
              (Arg("PATTERN", "key"),), (LIMIT, RAW),
              examples=("find running_var", "find '*.bias'")))
def find(call: Call) -> object:
    view = _view(call)
    pattern = call.args["pattern"]
    if any(c in pattern for c in "*?["):
        found = [k for k in view if fnmatch.fnmatchcase(k, pattern)]
    else:
        low = pattern.lower()
        found = [k for k in view if low in k.lower()]
    return _listing(call, found, view, f"match {quote(pattern)}")


@command(Spec("tree", "the keys as a tree; repeated blocks fold into `layers.{0..31}`",
              (Arg("PREFIX", "key", optional=True),),
              (Opt("--depth", "N", "show N levels (default, or 0: all)", convert=whole_number),
               RAW)))
def tree(call: Call) -> object:
    view = _view(call)
    prefix = call.args["prefix"]
    keys = _under(view, prefix)
    if not keys:
        raise ReadError(f"no key starts with {quote(prefix)}" if prefix else "no tensors")
    root_node = build_tree({k: view[k] for k in keys})
    top = Tree(Text(f"{hz.plural(root_node.count, 'tensor')}, {hz.count(root_node.params)} "
                    f"elements, {hz.nbytes(root_node.nbytes)}", style="bold"), guide_style="dim")
    parents = [top]
    rows = 0
    for depth, e in walk(root_node, call.args["depth"] or None):
        rows += 1
        if rows > _TREE_ROWS:
            top.add(rd.note("… more rows; narrow it: tree PREFIX or --depth N"))
            break
        node, t = e.node, e.node.tensor
        label = Text(e.label, style="bold" if node.children else "")
        if t is not None and not node.children:
            label.append(f"  {hz.shape(t.shape)} {t.dtype}", style=rd.DIM)
            if e.repeat > 1:
                label.append(f"  ×{e.repeat}", style=rd.DIM)
        else:
            reps = f"{e.repeat} × " if e.repeat > 1 else ""
            label.append(f"  {reps}{hz.plural(node.count, 'tensor')}, "
                         f"{hz.count(node.params)}", style=rd.DIM)
        del parents[depth + 1:]
        parents.append(parents[depth].add(label))
    return call.result("", top, count=len(keys))


@command(Spec("info", "one tensor: shape, dtype, storage, ties, what the model expects",
              (Arg("KEY", "key"),)))
def info(call: Call) -> object:
    key = call.args["key"]
    m = call.ctx.tensor(key)
    src = call.session.recipe.select(call.ctx.source())
    stored = src.get(m.key, m)
    rows = [("key", Text(key))]
    if m.key != key:
        rows.append(("stored as", Text(m.key)))
    rows += [("shape", f"{hz.shape(m.shape)}  ({m.numel:,} elements)"),
             ("dtype", m.dtype + (f"  (cast from {stored.dtype})" if stored.dtype != m.dtype
                                  else "")),
             ("stored on", m.device), ("size", hz.nbytes(m.nbytes)), ("kind", m.kind)]
    if m.storage is not None:
        where = f"record {m.storage.key}" + (f" in {m.storage.shard}" if m.storage.shard else "")
        rows.append(("storage", f"{where}, offset {m.storage_offset}"
                     + (f", stride {list(m.stride)}" if m.stride is not None else "")))
        ties = [k for k, o in call.ctx.current().items()
                if k != key and o.storage is not None and o.storage.ident == m.storage.ident]
        if ties:
            rows.append(("shares memory", Text(", ".join(ties[:6])
                                               + (" …" if len(ties) > 6 else ""))))
    data = {"key": key, **m.to_json(), "stored_as": m.key}
    if call.session.target is not None:
        rows.append(("model", _expectation(call, key, m)))
    return call.result("", rd.pairs(rows), **data)


def _expectation(call: Call, key: str, m: TensorMeta) -> Text:
    want = call.ctx.target().tensors.get(key)
    if want is None:
        return Text("not in the model (unexpected)", style=rd.BAD)
    if tuple(want.shape) != tuple(m.shape):
        return Text(f"expects {hz.shape(want.shape)}: shape mismatch", style=rd.BAD)
    same = "matches" + ("" if want.dtype == m.dtype else f" (model dtype {want.dtype}; "
                        "load_state_dict casts it)")
    return Text(same, style=rd.GOOD)


@command(Spec("containers", "the candidate state_dicts in the file; `select` picks one"))
def containers(call: Call) -> object:
    ckpt = call.ctx.source()
    recipe = call.session.recipe
    current = recipe.container if recipe.container is not None else ckpt.selected
    target = call.session.target
    headers = ["", "container", "kind", "tensors", "elements"] + (["fits"] if target else [])
    t = rd.table(*headers, right=("tensors", "elements"))
    rows = []
    for c in ckpt.containers:
        mark = "*" if c.path == current else ""
        row = [mark, Text(container_name(c.path)), c.kind, f"{len(c.tensors):,}",
               hz.count(c.params)]
        if target is not None:
            r = compare(c.tensors, target)
            row.append(rd.coverage_short(r))
        t.add_row(*row)
        rows.append({**c.to_json(), "selected": c.path == current})
    if not ckpt.containers:
        return call.result("the file holds no tensors", containers=[])
    return call.result(f"{hz.plural(len(ckpt.containers), 'container')} "
                       "(* = in use; `select NAME` to change)", t, containers=rows)


@command(Spec("status", "the open file, the model, coverage and the recipe at a glance"))
def status_(call: Call) -> object:
    st = status(call.ctx)
    rows = [("file", st["file"] or "none (`open PATH`)"),
            ("container", st["container"] or "-"),
            ("model", st["target"] or "none (`model SPEC`)"),
            ("coverage", st["coverage"] or "-"), ("loads", st["loads"] or "-"),
            ("recipe", f"{hz.plural(st['recipe'], 'step')} (`recipe show`)")]
    return call.result("", rd.pairs(rows), **st)
