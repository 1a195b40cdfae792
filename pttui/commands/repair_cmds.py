"""Repairing: set the model, check, take suggested steps, or write steps by hand.

Every step is a recipe op added to the Session (so ``undo`` takes it back and
``recipe save`` replays it with ``pttui fix``). A step that would change no key is
refused rather than added, and each result says what the step did to coverage.
"""

from __future__ import annotations

import fnmatch

from pttui.commands import render as rd
from pttui.core.repair import report_text as rt
from pttui.commands.context import container_name, find_container
from pttui.commands.parser import Arg, Opt, Spec
from pttui.commands.registry import Call, command
from pttui.commands.result import ERROR, CommandResult
from pttui.core.repair.diagnose import best_container
from pttui.core.base import Derived, ReadError, TensorMeta, source_keys
from pttui.core.recipe import (AcceptMissing, Cast, Drop, KeyMap, Op, RegexRename,
                               SelectContainer, quote)
from pttui.core.target import SPEC_FORMS, load_target, parse_model_args


def outcome(call: Call, res: CommandResult) -> CommandResult:
    """Add the verdict and coverage when a model is set; mark the session changed."""
    res.changed = True
    if call.session.source is not None and call.session.target is not None:
        report = call.ctx.report()
        res.add(rd.verdict(report), rd.coverage(report))
        res.data["report"] = report.to_json()
    return res


def fit_container(call: Call, res: CommandResult) -> None:
    """With several containers and none chosen yet, use the one that fits the model best
    (what ``pttui check`` does), as an undoable step that says so."""
    s = call.session
    src = s.source
    if src is None or s.target is None or len(src.containers) < 2 \
            or s.recipe.container is not None:
        return
    path, _ = best_container(src, s.target)
    if tuple(path) != src.selected:
        s.apply(SelectContainer(tuple(path)))
        res.add(rd.note(f"using container {quote(container_name(path))}: it fits the model "
                        "best (`select` changes it, `undo` goes back)"))


@command(Spec("model", "set the model the weights must fit (built on the meta device)",
              (Arg("SPEC", "model", help=SPEC_FORMS),
               Arg("K=V", "model-arg", optional=True, many=True, dest="model_args",
                   help="factory arguments, Python literals (num_classes=10)")),
              help=f"SPEC is {SPEC_FORMS}. Building costs no memory; the first model "
                   "imports torch (seconds).", slow=True,
              examples=("model torchvision:resnet50 num_classes=10",
                        "model ref:good_checkpoint.pt")))
def model(call: Call) -> CommandResult:
    target = load_target(call.args["spec"], parse_model_args(call.args["model_args"]))
    call.check_cancel()
    call.session.set_target(target)
    n = sum(t.numel for k, t in target.tensors.items() if k not in target.tied)
    res = call.result(f"model: {target.label}  ({rd.plural(len(target.tensors), 'key')}, "
                      f"{rd.plural(n, 'element')})", spec=target.spec, args=target.args,
                      keys=len(target.tensors))
    fit_container(call, res)
    return outcome(call, res)


@command(Spec("select", "use another container of the file (state_dict, model_ema, ...)",
              (Arg("CONTAINER", "container", help="a name `containers` lists; (root) for "
                   "the top level"),)))
def select(call: Call) -> CommandResult:
    src = call.ctx.source()
    path = find_container(src, call.args["container"])
    recipe = call.session.recipe
    in_use = recipe.container if recipe.container is not None else src.selected
    if tuple(path) == tuple(in_use):
        return call.result(f"already using container {quote(container_name(path))}; "
                           "nothing changed", container=list(path))
    call.session.apply(SelectContainer(path))
    n = len(call.ctx.current())
    return outcome(call, call.result(f"using container {quote(container_name(path))} "
                                     f"({rd.plural(n, 'tensor')})", container=list(path)))


@command(Spec("check", "would load_state_dict(strict=True) succeed? why not, and what helps",
              opts=(Opt("--assert", help="fail (and stop a script) unless the checkpoint "
                        "would load"),), slow=True))
def check(call: Call) -> CommandResult:
    ctx = call.ctx
    a, target, src = ctx.analysis(), ctx.target(), ctx.source()
    report, notes, steps = a.report, a.diagnosis, a.suggestions
    call.check_cancel()
    ctx.remember(steps)
    res = call.result(f"{src.path}  ->  {target.label}", rd.verdict(report),
                      rd.coverage(report), **report.to_json())
    use = rt.use_line(a)
    if use:
        res.add(rd.note(use))
    res.data.update(a.file_json())
    res.data["suggestions"] = [s.to_json() for s in steps]
    res.add(*(rd.note(f"· {n}") for n in notes), *rd.problems(report))
    if steps:
        res.add(rd.suggestions(steps), rd.note("`apply N` takes step N (`undo` takes it back)"))
    if call.args["assert"] and not report.ok_with_accepted:
        res.status = ERROR
        res.title = f"check: the checkpoint would not load into {target.label}"
    return res


@command(Spec("suggest", "ranked repair steps, each measured on the metadata first",
              slow=True))
def suggest(call: Call) -> CommandResult:
    ctx = call.ctx
    a, target = ctx.analysis(), ctx.target()
    report, steps = a.report, a.suggestions
    call.check_cancel()
    ctx.remember(steps)
    data = [s.to_json() for s in steps]
    if not steps:
        why = ("it already loads" if report.strict_ok else
               "no measured step helps; try `rename`, `drop` or `accept-missing` by hand")
        return call.result(f"no suggestions: {why}", rd.verdict(report), suggestions=data)
    return call.result(f"{rd.plural(len(steps), 'suggestion')} for {target.label}",
                       rd.suggestions(steps), rd.note("`apply N` takes step N"),
                       suggestions=data)


@command(Spec("apply", "take suggestion N (as numbered by the last `suggest` or `check`)",
              (Arg("N", "suggestion"),)))
def apply(call: Call) -> CommandResult:
    ctx = call.ctx
    steps = ctx.numbered()
    if not steps:
        raise ReadError("the session changed since the suggestions were listed; run `suggest` "
                        "again" if ctx.suggestions else
                        "no suggestions are listed; run `suggest` first")
    text = call.args["n"]
    if not text.isdigit() or not 1 <= int(text) <= len(steps):
        raise ReadError(f"apply: {text!r} is not a suggestion number; choose 1.."
                        f"{len(steps)} from `suggest`")
    step = steps[int(text) - 1]
    if step.target is not None:  # build the model with the step's arguments
        call.session.set_target(step.target)
        shown = " ".join(f"--model-arg {k}={v!r}" for k, v in step.args.items())
        res = call.result(f"applied: {step.title}", rd.note(f"the model is now "
                          f"{step.target.label} ({shown})"), model_args=dict(step.args))
        return outcome(call, res)
    recipe = call.session.recipe
    for op in step.ops:
        recipe = recipe.with_op(op)
    call.session.set_recipe(recipe)
    res = call.result(f"applied: {step.title}", *(rd.note(f"+ {op.describe()}")
                                                  for op in step.ops),
                      ops=[op.to_json() for op in step.ops])
    return outcome(call, res)


def _effect(before: dict[str, TensorMeta], after: dict[str, TensorMeta]) -> list[str]:
    """What an op did, in words: renamed / dropped / recast counts with an example."""
    old_name = {m.key: k for k, m in before.items()}
    renamed = [(old_name[m.key], k) for k, m in after.items()
               if old_name.get(m.key) != k and not isinstance(m, Derived)]
    kept = source_keys(after.values())
    dropped = [k for k, m in before.items() if m.key not in kept]
    recast = [k for k, m in after.items()
              if old_name.get(m.key) == k and before[k].dtype != m.dtype]
    out = []
    if renamed:
        out.append(f"renamed {rd.plural(len(renamed), 'key')}, e.g. "
                   f"{renamed[0][0]} -> {renamed[0][1]}")
    if dropped:
        out.append(f"dropped {rd.plural(len(dropped), 'key')}, e.g. {dropped[0]}")
    if recast:
        out.append(f"cast {rd.plural(len(recast), 'tensor')}, e.g. {recast[0]}")
    computed = [k for k, m in after.items() if isinstance(m, Derived) and before.get(k) != m]
    if computed:
        k = computed[0]
        was = f"{list(before[k].shape)} -> " if k in before else ""
        out.append(f"computed {rd.plural(len(computed), 'tensor')} anew, e.g. {k} "
                   f"{was}{list(after[k].shape)}")
    return out


def add_step(call: Call, op: Op) -> CommandResult:
    """Preview ``op``; refuse it when it changes nothing, else add it to the recipe."""
    before = call.ctx.current()
    effect = _effect(before, call.session.preview(op))
    if not effect and not isinstance(op, AcceptMissing):
        raise ReadError(f"{op.describe()}: matches no key; nothing changed (`find` "
                        "searches the keys)")
    call.check_cancel()
    call.session.apply(op)
    res = call.result(f"step {len(call.session.recipe.ops)}: {op.describe()}",
                      *(rd.note(e) for e in effect), op=op.to_json())
    return outcome(call, res)


def _glob(pattern: str, keys: list[str]) -> str:
    """A glob with no wildcard that names a module, not a key, means everything below it."""
    if any(c in pattern for c in "*?[") or pattern in keys:
        return pattern
    below = pattern.rstrip(".") + ".*"
    return below if any(fnmatch.fnmatchcase(k, below) for k in keys) else pattern


@command(Spec("rename", "rename keys: a regex with \\1 back-references, or one key (--exact)",
              (Arg("PATTERN", "key"), Arg("REPLACEMENT", "key")),
              (Opt("--exact", help="PATTERN is one key, renamed to REPLACEMENT as it is"),),
              help="Quote regexes in single quotes so backslashes survive.",
              examples=("rename '^backbone\\.' ''", "rename '\\.gamma$' .weight",
                        "rename --exact fc.weight head.weight")))
def rename(call: Call) -> CommandResult:
    pattern, repl = call.args["pattern"], call.args["replacement"]
    op = KeyMap({pattern: repl}) if call.args["exact"] else RegexRename(pattern, repl)
    return add_step(call, op)


@command(Spec("drop", "drop keys matching a glob (a module name drops all below it)",
              (Arg("PATTERN", "key"),),
              (Opt("--regex", help="PATTERN is a regex searched in each key"),),
              examples=("drop 'classifier.*'", "drop --regex 'num_batches_tracked$'")))
def drop(call: Call) -> CommandResult:
    pattern = call.args["pattern"]
    if call.args["regex"]:
        return add_step(call, Drop(pattern, "regex"))
    return add_step(call, Drop(_glob(pattern, list(call.ctx.current())), "glob"))


@command(Spec("cast", "store matching floating tensors in another dtype on export",
              (Arg("DTYPE", "dtype"), Arg("PATTERN", "key", optional=True)),
              (Opt("--regex", help="PATTERN is a regex"),),
              examples=("cast float16", "cast bfloat16 'encoder.*'")))
def cast(call: Call) -> CommandResult:
    pattern = call.args["pattern"] or "*"
    kind = "regex" if call.args["regex"] else "glob"
    if kind == "glob":
        pattern = _glob(pattern, list(call.ctx.current()))
    return add_step(call, Cast(call.args["dtype"], pattern, kind))


@command(Spec("accept-missing", "accept missing model keys (a strict=False load); all, or "
              "those matching a glob", (Arg("PATTERN", "missing", optional=True),)))
def accept_missing(call: Call) -> CommandResult:
    report = call.ctx.report()
    accepted = set(report.accepted_missing)
    missing = [k for k in report.missing if k not in accepted]
    pattern = call.args["pattern"]
    if not missing:
        raise ReadError("no missing keys left to accept" if not report.missing else
                        "every missing key is already accepted")
    if pattern:
        glob = _glob(pattern, missing)
        missing = [k for k in missing if fnmatch.fnmatchcase(k, glob)]
        if not missing:
            raise ReadError(f"none of the missing keys match {quote(pattern)}; `check` "
                            "lists them")
    return add_step(call, AcceptMissing(tuple(missing)))


def _moved(call: Call, step: str, did: bool, old: list[Op]) -> CommandResult:
    if not did:
        return call.result(f"nothing to {step}")
    new = call.session.recipe.ops
    gone = [op for op in old if not any(op is o for o in new)]
    back = [op for op in new if not any(op is o for o in old)]
    lines = [rd.note(f"- {op.describe()}") for op in gone]
    lines += [rd.note(f"+ {op.describe()}") for op in back]
    res = call.result(f"{step}: recipe has {rd.plural(len(new), 'step')}", *lines)
    return outcome(call, res)


@command(Spec("undo", "take back the last recipe change"))
def undo(call: Call) -> CommandResult:
    old = list(call.session.recipe.ops)
    return _moved(call, "undo", call.session.undo(), old)


@command(Spec("redo", "redo what `undo` took back"))
def redo(call: Call) -> CommandResult:
    old = list(call.session.recipe.ops)
    return _moved(call, "redo", call.session.redo(), old)
