"""Value steps by hand: transpose, reshape, concat/split, stack/unstack, resample a
position embedding, adapt input channels, resize rows. Each is a recipe op added like
a rename (previewed, refused when it changes nothing, taken back by ``undo``)."""

from __future__ import annotations

from pttui.commands.parser import Arg, Opt, Spec
from pttui.commands.registry import Call, command
from pttui.commands.repair_cmds import add_step
from pttui.commands.result import CommandResult
from pttui.core.base import ReadError
from pttui.core.recipe import (AdaptInputChannels, Concat, ResamplePosEmbed, Reshape,
                               ResizeRows, Split, Stack, Transpose, Unstack)

_TEMPLATES = "`*` stands for the same text in every key (the layer), `#` for an index."


def ints(text: str, what: str) -> tuple[int, ...]:
    """``4,6,1,1`` or ``24x24`` as integers; anything else a one-line error."""
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ReadError(f"{what}: expected integers like 4,6 or 24x24, got {text!r}") from None


def _kind(call: Call) -> str:
    return "regex" if call.args.get("regex") else "glob"


_REGEX = Opt("--regex", help="PATTERN is a regex searched in each key")


@command(Spec("transpose", "swap two dims of matching tensors (HF Conv1D <-> nn.Linear)",
              (Arg("PATTERN", "key"),), (_REGEX, Opt("--dims", "A,B", help="default 0,1")),
              examples=("transpose '*.attn.c_attn.weight'", "transpose fc.weight --dims 1,0")))
def transpose(call: Call) -> CommandResult:
    dims = ints(call.args["dims"], "transpose --dims") if call.args["dims"] else (0, 1)
    return add_step(call, Transpose(call.args["pattern"], _kind(call), dims))


@command(Spec("reshape", "the same elements in another shape (Linear <-> 1x1 conv)",
              (Arg("PATTERN", "key"), Arg("SHAPE")), (_REGEX,),
              examples=("reshape head.weight 10,512,1,1",)))
def reshape(call: Call) -> CommandResult:
    return add_step(call, Reshape(call.args["pattern"], ints(call.args["shape"], "reshape"),
                                  _kind(call)))


@command(Spec("concat", "join keys into one along a dim (q/k/v -> qkv)",
              (Arg("TARGET", "key"), Arg("SOURCE", "key", many=True, dest="sources")),
              (Opt("--dim", "N", convert=int, default=0),), help=_TEMPLATES,
              examples=("concat '*.attn.qkv.weight' '*.attn.q.weight' '*.attn.k.weight' "
                        "'*.attn.v.weight'",)))
def concat(call: Call) -> CommandResult:
    return add_step(call, Concat(tuple(call.args["sources"]), call.args["target"],
                                 call.args["dim"]))


@command(Spec("split", "cut a key into several along a dim (qkv -> q/k/v)",
              (Arg("SOURCE", "key"), Arg("TARGET", "key", many=True, dest="targets")),
              (Opt("--dim", "N", convert=int, default=0),
               Opt("--sizes", "A,B,..", help="default: equal parts")), help=_TEMPLATES,
              examples=("split '*.in_proj_weight' '*.q.weight' '*.k.weight' '*.v.weight'",)))
def split(call: Call) -> CommandResult:
    sizes = ints(call.args["sizes"], "split --sizes") if call.args["sizes"] else None
    return add_step(call, Split(call.args["source"], tuple(call.args["targets"]),
                                call.args["dim"], sizes))


@command(Spec("stack", "stack per-index keys into one tensor (experts.#.w1 -> experts.w1)",
              (Arg("SOURCE", "key"), Arg("TARGET", "key")),
              (Opt("--dim", "N", convert=int, default=0),), help=_TEMPLATES,
              examples=("stack 'moe.experts.#.w1.weight' moe.w1",)))
def stack(call: Call) -> CommandResult:
    return add_step(call, Stack(call.args["source"], call.args["target"], call.args["dim"]))


@command(Spec("unstack", "part a tensor into per-index keys (experts.w1 -> experts.#.w1)",
              (Arg("SOURCE", "key"), Arg("TARGET", "key")),
              (Opt("--dim", "N", convert=int, default=0),), help=_TEMPLATES,
              examples=("unstack moe.w1 'moe.experts.#.w1.weight'",)))
def unstack(call: Call) -> CommandResult:
    return add_step(call, Unstack(call.args["source"], call.args["target"], call.args["dim"]))


@command(Spec("resample", "a position embedding for another patch grid (bicubic)",
              (Arg("KEY", "key"), Arg("GRID", help="HxW or N (square)")),
              (Opt("--prefix", "N", convert=int, help="class/distillation tokens (default: "
                   "read from the shape)"),
               Opt("--old-grid", "HxW", help="default: square"),
               Opt("--method", "M", choices=("timm", "torchvision"), default="timm")),
              examples=("resample encoder.pos_embedding 24x24 --method torchvision",)))
def resample(call: Call) -> CommandResult:
    grid = ints(call.args["grid"], "resample grid")
    old = ints(call.args["old_grid"], "resample --old-grid") if call.args["old_grid"] else None
    return add_step(call, ResamplePosEmbed(call.args["key"], grid if len(grid) > 1 else
                                           grid * 2, call.args["prefix"], old,
                                           call.args["method"]))


@command(Spec("adapt-channels", "the first conv for another input channel count (as timm)",
              (Arg("PATTERN", "key"), Arg("N", dest="channels")), (_REGEX,),
              examples=("adapt-channels conv1.weight 1",)))
def adapt_channels(call: Call) -> CommandResult:
    return add_step(call, AdaptInputChannels(call.args["pattern"],
                                             ints(call.args["channels"], "channels")[0],
                                             _kind(call)))


@command(Spec("resize-rows", "grow or shrink dim 0 (a vocabulary and its tied head)",
              (Arg("PATTERN", "key"), Arg("ROWS")),
              (_REGEX, Opt("--fill", "F", choices=("mean", "zeros"), default="mean")),
              examples=("resize-rows 'transformer.wte.weight' 50304",)))
def resize_rows(call: Call) -> CommandResult:
    return add_step(call, ResizeRows(call.args["pattern"], ints(call.args["rows"], "rows")[0],
                                     _kind(call), call.args["fill"]))
