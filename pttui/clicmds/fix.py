"""``pttui fix PATH --model SPEC (--auto | --recipe R.json) -o OUT``: repair and export."""

from __future__ import annotations

import argparse
import json
import sys

from pttui.clicmds._common import add_target_arguments, open_source_and_target
from pttui.core.repair import report_text as rt
from pttui.core.repair import auto_fix, reopen
from pttui.core.recipe import carry_metadata
from pttui.core.compare import compare
from pttui.core.recipe import Recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the checkpoint to repair (never modified)")
    add_target_arguments(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--auto", action="store_true", help="apply the safe suggestions in order")
    how.add_argument("--recipe", metavar="R.json", help="replay a saved recipe")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="where to write: .pt/.pth/.bin (torch.save) or .safetensors")
    p.add_argument("--recipe-out", metavar="R.json",
                   help="where to write the recipe applied (default: OUT.recipe.json)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; write nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from pttui.core.recipe import replay_command
    from pttui.core.session import export_session

    ckpt, target, chosen = open_source_and_target(args)
    if args.auto:
        result = auto_fix(ckpt, target, choose=not chosen)  # the user's --select wins
        recipe, report, refused, ckpt = result.recipe, result.report, result.refused, result.ckpt
        steps = [s.title for s in result.steps]
    else:
        recipe = Recipe.load(args.recipe)
        recipe.target = getattr(target, "spec", None) or args.model  # the replay names them
        recipe.model_args = dict(getattr(target, "args", {}) or {})
        ckpt = reopen(ckpt, recipe)
        report = compare(recipe.apply(ckpt.tensors), target,
                         accepted_missing=recipe.accepted_missing,
                         ckpt_metadata=carry_metadata(ckpt.state_metadata, recipe))
        steps = [op.describe() for op in recipe.ops]
        refused = None if report.ok_with_accepted else (
            "the recipe does not make the checkpoint load: " + rt.verdict(report).split(": ", 1)[1])
    doc = {"path": ckpt.path, "model": args.model, "steps": steps, "refused": refused,
           "report": report.to_json()}
    if refused:
        _emit(args, doc, [f"pttui: refusing to fix {ckpt.path}: {refused}"], err=True)
        return 1
    recipe_out = args.recipe_out or args.output + ".recipe.json"
    lines = [f"{ckpt.path}  ->  {args.output}"] + [f"  step: {s}" for s in steps]
    lines.append("  " + rt.verdict(report))
    if args.dry_run:
        _emit(args, doc, lines + ["  (dry run: nothing written)"])
        return 0
    result, recipe_out = export_session(ckpt, recipe, args.output, force=args.force,
                                        recipe_out=recipe_out)
    doc.update({"output": result.path, "recipe_out": recipe_out, "verified": result.verified,
                "notes": result.problems, "tensors": result.tensors,
                "aliases": result.aliases})
    lines.append(f"  wrote {result.path}: {result.tensors} tensors, "
                 f"{result.nbytes:,} bytes in {result.seconds:.2f}s")
    lines.append(f"  {result.verdict}")
    lines += [f"  note: {p}" for p in result.problems]
    tied = tied_note(result.aliases, result.path)
    if tied:
        lines.append(f"  note: {tied}")
        doc["tied_note"] = tied
    replay = replay_command(recipe_out, recipe, source=ckpt.path, out=result.path)
    lines.append(f"  recipe: {recipe_out}")
    lines.append(f"  replay: {replay}")
    doc["replay"] = replay
    _emit(args, doc, lines)
    return 0


def tied_note(aliases: dict[str, str], out: str) -> str | None:
    """safetensors stores a tied weight once (the alias is in its ``pttui.aliases``
    metadata), so a strict ``load_state_dict(load_file(OUT))`` misses the alias."""
    if not aliases or not str(out).endswith(".safetensors"):
        return None
    pairs = ", ".join(f"{a} = {k}" for a, k in list(aliases.items())[:3])
    if len(aliases) > 3:
        pairs += f", … ({len(aliases) - 3} more)"
    n = len(aliases)
    them = "them" if n != 1 else "it"
    return (f"{n} tied name{'s' if n != 1 else ''} stored once ({pairs}), so a strict "
            f"load_state_dict(load_file(OUT)) reports {them} missing: load with "
            f"safetensors.torch.load_model(model, OUT) (the model's tie fills {them}) or "
            "strict=False; a .pt output keeps both names")


def _emit(args: argparse.Namespace, doc: dict, lines: list[str], err: bool = False) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        if err:
            sys.stderr.write(lines[0] + "\n")
    else:
        (sys.stderr if err else sys.stdout).write("\n".join(lines) + "\n")
