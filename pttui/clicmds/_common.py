"""Options and steps that check, fix and the shell share: open + target + container."""

from __future__ import annotations

import argparse

from pttui.core.base import Checkpoint
from pttui.core.read import open_checkpoint


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="torchvision:NAME, package.module:factory, path/to/file.py:Factory, "
                        "or ref:OTHER_CHECKPOINT")
    p.add_argument("--model-arg", action="append", default=[], metavar="K=V",
                   help="an argument for the model factory (repeatable; Python literals)")
    p.add_argument("--select", metavar="PATH.IN.CONTAINER",
                   help="use this container instead of the best-fitting one")


def open_source_and_target(args: argparse.Namespace) -> tuple[Checkpoint, object, bool]:
    """The checkpoint, the target, and whether the user chose the container."""
    from pttui.core.target import load_target, parse_model_args

    select = None if args.select is None else tuple(p for p in args.select.split(".") if p)
    ckpt = open_checkpoint(args.path, select)
    target = load_target(args.model, parse_model_args(args.model_arg))
    return ckpt, target, select is not None
