"""``recipe``: show the repair so far (also as mmengine / transformers / Python), save it
for ``pttui fix --recipe``, load one, or take one step out."""

from __future__ import annotations

import json
import os

from rich.text import Text

from pttui.commands import render as rd
from pttui.commands.context import checkpoint_format, is_binary
from pttui.commands.parser import Arg, Opt, Spec
from pttui.commands.registry import Call, command
from pttui.commands.repair_cmds import outcome
from pttui.core.base import ReadError
from pttui.core.recipe import Recipe
from pttui.core.target import special_file

ACTIONS = ("show", "save", "load", "remove")
STYLES = ("text", "json", "mmengine", "hf", "python")


def for_file(call: Call) -> Recipe:
    """The session's recipe with what it was made for filled in (source, model, args)."""
    return call.session.recipe_for_file()


@command(Spec("recipe", "the repair steps: show (also --as mmengine|hf|python), save, load, "
              "remove N",
              (Arg("ACTION", "recipe-action", optional=True, choices=ACTIONS),
               Arg("ARG", "path", optional=True, help="the file for save/load, the step for "
                   "remove")),
              (Opt("--as", "STYLE", "how `show` writes it: " + ", ".join(STYLES),
                   choices=STYLES, default="text"),
               Opt("--force", help="let `save` replace an existing file")),
              examples=("recipe save fix.json", "recipe show --as mmengine", "recipe remove 2")))
def recipe(call: Call) -> object:
    action = call.args["action"] or "show"
    arg = call.args["arg"]
    if action != "show" and not arg:
        what = "a step number" if action == "remove" else "a file"
        raise ReadError(f"recipe {action}: needs {what} (recipe {action} "
                        f"{'N' if action == 'remove' else 'PATH'})")
    if action == "show":
        if arg:
            raise ReadError(f"recipe show takes no file; to read one: recipe load {arg}")
        return _show(call)
    if action == "save":
        return _save(call, os.path.expanduser(arg))
    if action == "load":
        return _load(call, os.path.expanduser(arg))
    return _remove(call, arg)


def _show(call: Call) -> object:
    from pttui.core.recipe import render as recipe_render

    recipe = for_file(call)
    style = call.args["as"]
    data = recipe.to_json()
    if style != "text":
        text = {"json": lambda r: json.dumps(r.to_json(), indent=2),
                "mmengine": recipe_render.to_mmengine, "hf": recipe_render.to_hf,
                "python": recipe_render.to_python}[style](recipe)
        return call.result("", Text(text.rstrip("\n")), recipe=data)
    if not recipe.ops:
        return call.result("the recipe is empty: the file is used as it is", recipe=data)
    t = rd.table("#", "step", right=("#",))
    for i, op in enumerate(recipe.ops, 1):
        t.add_row(str(i), Text(op.describe()))
    return call.result(f"recipe: {rd.plural(len(recipe.ops), 'step')}", t, recipe=data)


def _save(call: Call, path: str) -> object:
    if os.path.exists(path) and not call.args["force"]:
        raise ReadError(f"{path}: exists; choose another name or add --force to replace it")
    recipe = for_file(call)
    recipe.save(path)
    from pttui.core.recipe import replay_command

    return call.result(f"saved {rd.plural(len(recipe.ops), 'step')} to {path}",
                       rd.note("replay: " + replay_command(path, recipe)), path=path,
                       recipe=recipe.to_json())


def _load(call: Call, path: str) -> object:
    call.ctx.source()
    recipe = _read_recipe(path)
    call.session.set_recipe(recipe)
    res = call.result(f"loaded {rd.plural(len(recipe.ops), 'step')} from {path}",
                      *(rd.note(f"{i}. {op.describe()}") for i, op in enumerate(recipe.ops, 1)),
                      path=path, recipe=recipe.to_json())
    target = call.session.target
    if recipe.target and (target is None or target.spec != recipe.target):
        args = " ".join(f"{k}={v!r}" for k, v in recipe.model_args.items())
        res.add(rd.note(f"it was made for {recipe.target}: `model {recipe.target}"
                        f"{' ' + args if args else ''}` checks it"))
    return outcome(call, res)


def _read_recipe(path: str) -> Recipe:
    """Recipe.load, with a plain word for what the file is when it is no recipe: a
    checkpoint given by mistake, a folder, binary data, a device."""
    if not path.strip():
        raise ReadError("recipe load: needs a path (recipe load PATH)")
    if os.path.isdir(path):
        raise ReadError(f"{path}: is a folder; give a recipe JSON file (an export writes "
                        "OUT.recipe.json beside OUT)")
    odd = special_file(path)
    if odd:  # a FIFO would block the read, a device never end it
        raise ReadError(f"{path}: {odd}; give a recipe JSON file")
    try:
        return Recipe.load(path)
    except ReadError:
        fmt = checkpoint_format(path)
        if fmt is None and not is_binary(path):
            raise
        beside = path + ".recipe.json"
        hint = (f"its recipe is `recipe load {beside}`" if os.path.isfile(beside) else
                "the recipe of an export is the OUT.recipe.json written beside it")
        what = f"it looks like a checkpoint ({fmt}), which `open` reads" if fmt else \
            "it holds binary data"
        raise ReadError(f"{path}: not a recipe JSON file; {what}; {hint}") from None


def _remove(call: Call, text: str) -> object:
    ops = call.session.recipe.ops
    if not text.isdigit() or not 1 <= int(text) <= len(ops):
        raise ReadError(f"recipe remove: {text!r} is not a step number" +
                        (f"; choose 1..{len(ops)} (`recipe show`)" if ops else
                         "; the recipe is empty"))
    op = ops[int(text) - 1]
    call.session.remove(int(text) - 1)
    return outcome(call, call.result(f"removed step {text}: {op.describe()}"))
