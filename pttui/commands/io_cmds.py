"""Touching real bytes and real torch: load (a torch.load in a child process), export
(the repaired weights, atomically, verified), devices (where the weights would fit).
Each one may take seconds; each honours the cancel event."""

from __future__ import annotations

import os
import shlex

from rich.text import Text

from pttui.commands import render as rd
from pttui.commands.parser import Arg, Opt, Spec, seconds
from pttui.commands.recipe_cmds import for_file
from pttui.commands.registry import Call, command
from pttui.commands.result import ERROR, CommandResult
from pttui.core.base import humanize as hz
from pttui.core.repair import report_text as rt
from pttui.core.base import ReadError

MAP_LOCATIONS = ("auto", "cpu", "cuda", "meta", "keep")
_SHOW_TENSORS = 20


@command(Spec("load", "try a real torch.load of the open file in a child process; "
              "failures are explained with the fix to type next",
              opts=(Opt("--map-location", "WHERE", "auto (default), cpu, cuda, cuda:N, meta, "
                        "keep", kind="map-location", default="auto"),
                    Opt("--allow", "MODULE.NAME", "allow one global for weights_only=True "
                        "(imports its module)", kind="global", many=True),
                    Opt("--mmap", help="memory-map the file (the default for torch zip "
                        "files)"),
                    Opt("--no-mmap", help="read the whole file instead of mapping it"),
                    Opt("--timeout", "S", "stop after S seconds", convert=seconds),
                    Opt("--force", help="skip the check that the file fits in memory")),
              help="weights_only stays True here; a load that runs the file's code is "
                   "`pttui load PATH --unsafe-weights-only-false`, outside the shell.",
              slow=True, examples=("load --map-location cpu", "load --allow argparse.Namespace")))
def load(call: Call) -> CommandResult:
    from pttui.core.load import LoadPolicy, attempt_load

    src = call.ctx.source()
    _not_an_index(src)
    if call.args["mmap"] and call.args["no_mmap"]:
        raise ReadError("load: --mmap and --no-mmap ask for opposite things; give one")
    try:
        policy = LoadPolicy(allow_globals=tuple(call.args["allow"]),
                            map_location=call.args["map_location"],
                            mmap=True if call.args["mmap"] else False if call.args["no_mmap"]
                            else None)
    except ValueError as err:
        raise ReadError(f"load: {err}") from None
    result = attempt_load(src.path, policy, force=call.args["force"], cancel=call.cancel,
                          timeout=call.args["timeout"])
    call.check_cancel()
    before = call.session.policy
    call.session.set_policy(policy)
    pol = result.policy
    how = (f"{result.seconds:.1f}s, weights_only={pol.get('weights_only')}, "
           f"map_location={pol.get('map_location')}")
    res = _failure(call, result, policy, how) if not result.ok else _loaded(call, result, how)
    if policy != before:  # the TUI's `l` loads with the session's policy: say it changed
        res.add(rd.note(f"this session's loads now use {_policy_words(policy)} (the TUI's l "
                        "too); `load` with no options goes back to the defaults"))
    return res


def _policy_words(policy) -> str:  # noqa: ANN001 - a LoadPolicy
    words = [f"map_location={policy.map_location}"]
    if policy.allow_globals:
        words.append("--allow " + " ".join(policy.allow_globals))
    if policy.mmap is not None:
        words.append("--mmap" if policy.mmap else "--no-mmap")
    return ", ".join(words)


def _loaded(call: Call, result, how: str) -> CommandResult:  # noqa: ANN001
    s = result.summary or {}
    res = call.result(f"loaded with torch.load ({how})", rd.pairs([
        ("object", str(s.get("type"))),
        ("tensors", f"{s.get('tensor_count', 0):,}, {hz.nbytes(s.get('tensor_bytes') or 0)}"),
        ("peak memory", hz.nbytes(result.peak_rss) if result.peak_rss else "N/A")]),
        **result.to_json())
    t = rd.table("key", "shape", "dtype", "device")
    tensors = s.get("tensors") or []
    for item in tensors[:_SHOW_TENSORS]:
        shape = "?" if item.get("shape") is None else hz.shape(tuple(item["shape"]))
        t.add_row(Text(str(item["key"])), shape, str(item["dtype"]), str(item["device"]))
    if tensors:
        res.add(t)
    left = s.get("tensor_count", len(tensors)) - min(len(tensors), _SHOW_TENSORS)
    if left > 0:
        res.add(rd.more(left, "`ls` lists the keys"))
    res.add(*(rd.note(f"warning: {w}") for w in result.warnings))
    return res


def _not_an_index(src) -> None:  # noqa: ANN001 - a Checkpoint
    """`load` runs torch.load on one file; a sharded set's index is not one. Say what to
    do here, in the shell, rather than let the load fail."""
    from pttui.core.read import formats

    if src.format != formats.SHARDED:
        return
    shards = list(src.shards or [])
    first = os.path.join(os.path.dirname(src.path), shards[0]) if shards else "SHARD"
    raise ReadError(f"load: {src.path} is the index of a sharded set "
                    f"({rd.plural(len(shards), 'shard file')}); torch.load reads one file, "
                    f"so open a shard and load that: `open {shlex.quote(first)}`, then "
                    "`load` (`ls`, `check` and `export` work on the whole set as it is)")


def _failure(call: Call, result, policy, how: str) -> CommandResult:  # noqa: ANN001
    f = result.failure
    res = call.result(f"load failed ({f.kind}): {f.headline}", **result.to_json())
    res.status = ERROR
    res.add(rd.note(how), Text(f.explanation))
    for fx in f.fixes:
        line = _fix_line(call, policy, fx)
        res.add(Text(f"  try: {line}" if line else f"  - {fx.description}",
                     style="bold" if line else ""))
        if line:
            res.add(rd.note(f"       {fx.description}"))
        elif fx.code:
            res.add(rd.note(f"       {fx.code}"))
    return res


def _fix_line(call: Call, policy, fx) -> str | None:  # noqa: ANN001 - LoadPolicy, Fix
    """The shell command that applies ``fx``; None when no option can."""
    if fx.unsafe:
        return (f"pttui load {shlex.quote(call.ctx.source().path)} "
                "--unsafe-weights-only-false   (outside the shell; runs the file's code)")
    words = policy.fix_options(fx, force=call.args["force"])
    return None if words is None else shlex.join(["load", *words])


@command(Spec("export", "write the repaired weights (.pt or .safetensors), verified by "
              "reading them back, and the recipe beside them",
              (Arg("PATH", "path", help="the output; .pt/.pth/.bin or .safetensors"),),
              (Opt("--format", "FMT", "pt or safetensors (default: from the extension)",
                   choices=("pt", "safetensors")),
               Opt("--force", help="replace PATH (and its recipe) if they exist"),
               Opt("--no-recipe", help="do not write PATH.recipe.json"),
               Opt("--anyway", help="export even though the model would not load the result")),
              help="The source is never written; a failed or interrupted export leaves "
                   "nothing behind.", slow=True,
              examples=("export fixed.safetensors", "export out.pt --force")))
def export(call: Call) -> CommandResult:
    from pttui.core.session import export_session

    src = call.ctx.source()
    if not call.args["path"].strip():
        raise ReadError("export: needs a path for the output (export PATH; .pt or "
                        ".safetensors)")
    out = os.path.expanduser(call.args["path"])
    _check_suffix(out, call.args["format"])
    if call.session.target is not None and not call.args["anyway"]:
        report = call.ctx.report()
        if not report.ok_with_accepted:
            why = rt.verdict(report).split(": ", 1)[-1]
            raise ReadError(f"export: {call.session.target.label} would still not load it "
                            f"({why}); repair it first (`suggest`) or add --anyway")
    recipe = for_file(call)
    result, recipe_out = export_session(
        src, recipe, out, fmt=call.args["format"], force=call.args["force"],
        write_recipe=not call.args["no_recipe"],
        progress=lambda done, total: call.report(done, total, "export"), cancel=call.cancel)
    res = call.result(f"wrote {result.path}: {rd.plural(result.tensors, 'tensor')}, "
                      f"{hz.nbytes(result.nbytes)} in {result.seconds:.2f}s",
                      **result.to_json(), recipe_path=recipe_out)
    res.add(Text(result.verdict, style=rd.GOOD) if result.verified
            else rd.note(result.verdict or "not verified"))
    res.add(*(rd.note(f"note: {p}") for p in result.problems))
    if result.aliases:
        res.add(rd.note(f"{rd.plural(len(result.aliases), 'tied name')} stored once "
                        "(.safetensors cannot share memory)"))
    if recipe_out:
        from pttui.core.recipe import replay_command

        res.add(rd.note(f"recipe: {recipe_out}"))
        if call.session.target is not None and not call.ctx.report().ok_with_accepted:
            res.add(rd.note("no replay: the model would not load this result (--anyway), "
                            "so `pttui fix` refuses the recipe"))
        else:
            res.add(rd.note("replay: " + replay_command(recipe_out, recipe, source=src.path,
                                                         out=result.path)))
    return res


def _check_suffix(out: str, fmt: str | None) -> None:
    """Refuse ``export x.pt --format safetensors``: a name that says another format than
    the bytes would mislead every tool that goes by the suffix."""
    if fmt is None:
        return
    from pttui.core.export import EXTENSIONS, SAFETENSORS
    from pttui.core.session import with_format

    ext = os.path.splitext(out)[1].lower()
    named = EXTENSIONS.get(ext)
    wanted = SAFETENSORS if fmt == "safetensors" else EXTENSIONS[".pt"]
    if named is not None and named != wanted:
        raise ReadError(f"export: {out} ends in {ext}, but --format {fmt} writes "
                        f"{'safetensors' if fmt == 'safetensors' else 'torch.save'} data; "
                        f"name it {with_format(out, fmt)} (or leave --format out: the "
                        "suffix chooses)")


@command(Spec("devices", "CPU RAM, GPUs (NVML) and who uses them, torch/CUDA versions; "
              "where the open checkpoint's weights would go", slow=True))
def devices(call: Call) -> CommandResult:
    from pttui.core.device import devices as dv
    from pttui.core.device import plan as fp

    versions = dv.torch_versions()
    snap = dv.snapshot(torch_uuids=list(versions.uuids))
    call.check_cancel()
    t = rd.table("device", "name", "used", "free", "total", "util", "temp",
                 right=("used", "free", "total", "util", "temp"))
    fb = dv.format_bytes
    cpu = snap.cpu
    t.add_row("cpu", f"{cpu.cores or '?'} cores", "", fb(cpu.ram_available),
              fb(cpu.ram_total), "", "")
    for g in snap.gpus:
        where = (f"cuda:{g.cuda_ordinal}" if g.cuda_ordinal is not None
                 else "MIG" if g.mig_enabled else "hidden")
        t.add_row(where, g.name or "GPU", fb(g.memory_used), fb(g.available),
                  fb(g.memory_total), "N/A" if g.utilization is None else f"{g.utilization}%",
                  "N/A" if g.temperature is None else f"{g.temperature} C")
    doc = {**snap.to_json()}
    stored = cast = None
    if call.session.source is not None:
        stored, cast = fp.both(list(call.ctx.current().values()), snap)
        doc["plan"] = {"file": call.session.source.path, **stored.to_json(),
                       "cast": None if cast is None else cast.to_json()}
    res = call.result("", t, **doc)
    for g in snap.gpus:
        for p in g.processes or []:
            res.add(rd.note(f"{'cuda:' + str(g.cuda_ordinal) if g.cuda_ordinal is not None else g.label}: "
                            f"pid {p.pid} {p.user or '?'} {fb(p.memory)} "
                            f"{p.command or '(not visible from here)'}"))
    if versions.torch is None:
        res.add(rd.note(f"torch: not available ({versions.error})"))
    else:
        built = f"CUDA {versions.cuda}" if versions.cuda else "CPU-only build"
        res.add(rd.note(f"torch {versions.torch} ({built}); CUDA available: "
                        f"{'yes' if versions.cuda_available else 'no'}"))
    if not snap.gpus:
        res.add(rd.note(f"GPUs: none ({snap.reason or 'no GPU found'})"))
    for n in snap.notes:
        res.add(rd.note(n))
    if stored is not None:
        body = fp.lines(stored, cast)
        res.add(Text.assemble(Text("plan: ", style="bold"),
                              Text(body[0], style=rd.GOOD if stored.fits else rd.BAD)))
        for line in body[1:]:
            res.add(rd.note(line))
    return res
