"""``pttui check PATH --model SPEC``: would a strict load succeed? Exit 0 yes, 1 no."""

from __future__ import annotations

import argparse
import json
import sys

from pttui.clicmds._common import add_target_arguments, open_source_and_target
from pttui.core.recipe import Recipe
from pttui.core.repair import report_text as rt
from pttui.core.repair import analyse
from pttui.core.repair import choose_container


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the checkpoint to check")
    add_target_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    ckpt, target, chosen = open_source_and_target(args)
    if not chosen:
        ckpt = choose_container(ckpt, target)
    a = analyse(ckpt, Recipe(), target)  # what the shell's `check` and the TUI show
    report, notes, steps = a.report, a.diagnosis, a.suggestions
    load_notes = rt.load_notes(ckpt)  # what torch.load itself would refuse
    if args.json:
        doc = report.to_json()
        doc.update({"path": ckpt.path, "model": args.model, "container": list(ckpt.selected or ()),
                    "diagnosis": notes, "suggestions": [s.to_json() for s in steps],
                    "notes": load_notes, **a.file_json()})
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        sel = ".".join(ckpt.selected or ()) or "(root)"
        lines = [f"{ckpt.path}  ->  {getattr(target, 'label', args.model)}",
                 f"  container: {sel}", "  " + rt.verdict(report), "  " + rt.coverage(report)]
        use = rt.use_line(a)
        if use:
            lines.append("  " + use)
        lines += [f"  note: {n}" for n in load_notes]
        lines += [f"  · {n}" for n in notes]
        lines += ["  " + line for line in rt.problem_lines(report)]
        if steps:
            lines.append("  next steps, each measured on the file as it is now "
                         "(`pttui fix --auto --dry-run` shows the whole plan):")
            lines += rt.suggestion_lines(steps)
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if report.strict_ok else 1
