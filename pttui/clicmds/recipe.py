"""``pttui recipe show R.json [--as text|json|mmengine|hf|python]``."""

from __future__ import annotations

import argparse
import json
import sys

from pttui.core.recipe import Recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                           parser_class=type(p))
    show = sub.add_parser("show", help="print a recipe, or render it for another tool")
    show.add_argument("recipe", metavar="R.json")
    show.add_argument("--as", dest="style", default="text",
                      choices=("text", "json", "mmengine", "hf", "python"),
                      help="text (default), json, mmengine revise_keys, transformers "
                           "key_mapping, or a plain-Python snippet")


def run(args: argparse.Namespace) -> int:
    from pttui.core.recipe import render as recipe_render

    recipe = Recipe.load(args.recipe)
    if args.style == "json":
        out = json.dumps(recipe.to_json(), indent=2)
    elif args.style == "mmengine":
        out = recipe_render.to_mmengine(recipe)
    elif args.style == "hf":
        out = recipe_render.to_hf(recipe)
    elif args.style == "python":
        out = recipe_render.to_python(recipe)
    else:
        head = [f"recipe for {recipe.source or '?'} -> {recipe.target or '?'}"]
        out = "\n".join(head + [f"  {i}. {op.describe()}" for i, op in
                                enumerate(recipe.ops, 1)])
    sys.stdout.write(out.rstrip("\n") + "\n")
    return 0
