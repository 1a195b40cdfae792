"""``pttui load PATH``: a real torch.load in a subprocess, and what to do when it fails.

Exit codes: 0 it loaded, 1 torch refused or failed (the report says why and what
to run next), 2 the file cannot be read at all or the command line is wrong.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import textwrap

from pttui.core.base import ReadError
from pttui.core.load import UNSAFE_FLAG

_SHOW_TENSORS = 20
TRUST_FLAG = "--i-trust-this-file"


def _checked(field: str):  # noqa: ANN202 - an argparse type that LoadPolicy validates
    def check(text: str) -> str:
        from pttui.core.load import LoadPolicy

        try:
            LoadPolicy(**{field: (text,) if field == "allow_globals" else text})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text

    return check


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the checkpoint file")
    p.add_argument("--map-location", type=_checked("map_location"), default="auto", metavar="WHERE",
                   help="auto (cuda if available, else cpu; default), cpu, cuda, cuda:N, "
                        "meta (shapes only, no memory), keep (where the file says: "
                        "reproduces a device error)")
    p.add_argument("--allow", type=_checked("allow_globals"), action="append", default=[],
                   metavar="MODULE.NAME",
                   help="allow-list one global for weights_only=True (repeat for more); "
                        "its module is imported, which runs that module's code")
    mm = p.add_mutually_exclusive_group()
    mm.add_argument("--mmap", dest="mmap", action="store_const", const=True, default=None,
                    help="memory-map the file (default for torch zip files)")
    mm.add_argument("--no-mmap", dest="mmap", action="store_const", const=False,
                    help="read the whole file into memory")
    p.add_argument(UNSAFE_FLAG, dest="unsafe", action="store_true",
                   help="DANGER: torch.load(weights_only=False) runs any code pickled in the "
                        "file, as you. Asks for a typed 'yes' on a terminal; otherwise needs "
                        f"{TRUST_FLAG}")
    p.add_argument(TRUST_FLAG, dest="trust", action="store_true",
                   help=f"confirm {UNSAFE_FLAG} when stdin is not a terminal")
    p.add_argument("--save-tensors", metavar="OUT.safetensors",
                   help="write every loaded tensor to a new .safetensors file (dotted keys, "
                        "as a state_dict): after an unsafe load, the way to keep the weights "
                        "without keeping a pickle")
    p.add_argument("--overwrite", action="store_true",
                   help="let --save-tensors replace an existing file")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="stop the load after S seconds")
    p.add_argument("--force", action="store_true",
                   help="skip the check that the file fits in free memory")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from pttui.core.load import LoadPolicy, attempt_load

    if args.overwrite and not args.save_tensors:
        raise ReadError("--overwrite only applies to --save-tensors; add --save-tensors "
                        "OUT.safetensors or drop it")
    if args.trust and not args.unsafe:
        raise ReadError(f"{TRUST_FLAG} only confirms {UNSAFE_FLAG}; drop it, or add "
                        f"{UNSAFE_FLAG} if you really mean to run the file's code")
    policy = LoadPolicy(weights_only=not args.unsafe, allow_globals=tuple(args.allow),
                        map_location=args.map_location, mmap=args.mmap)
    if args.save_tensors:  # a bad destination fails before anyone is asked to consent
        from pttui.core.load import check_destination

        check_destination(args.save_tensors, args.path, args.map_location, args.overwrite)
    consent = _confirm_unsafe(args) if args.unsafe else False
    result = attempt_load(args.path, policy, consent=consent, force=args.force,
                          timeout=args.timeout, save_to=args.save_tensors,
                          overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result, args))
    if result.ok:
        return 0
    f = result.failure
    assert f is not None
    first = next((c for c in (_fix_command(args, fx) for fx in f.fixes
                              if not fx.unsafe) if c), None)
    hint = f"; try: {first}" if first else ""
    why = f.headline.rstrip(".")
    sys.stderr.write(f"pttui: {args.path} did not load ({f.kind}): {why}{hint}\n")
    return 1


def _confirm_unsafe(args: argparse.Namespace) -> bool:
    """A typed 'yes' on a terminal; the explicit trust flag everywhere else."""
    warning = (f"torch.load(weights_only=False) runs any code pickled in {args.path}, as "
               "you: it can read and change your files, and use your keys (the load "
               "process gets no network where the system allows).")
    if not sys.stdin.isatty():
        if args.trust:
            return True
        raise ReadError(f"{UNSAFE_FLAG} runs the file's pickled code; stdin is not a "
                        f"terminal, so confirm with {TRUST_FLAG}")
    sys.stderr.write(f"WARNING: {warning}\nType 'yes' to load it anyway: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != "yes":
        raise ReadError("not loaded: the unsafe load was not confirmed (type 'yes' to confirm)")
    return True


# -- human output -----------------------------------------------------------------------

def render(result, args: argparse.Namespace) -> str:  # noqa: ANN001 - LoadResult
    from pttui.core.device import format_bytes

    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    pol = result.policy
    mmap = {True: "on", False: "off", None: "n/a"}.get(pol.get("mmap"), "?")
    how = (f"{result.format}, {result.seconds:.1f} s; weights_only={pol.get('weights_only')}, "
           f"map_location={pol.get('map_location')}, mmap={mmap}")
    if not result.ok:
        return _render_failure(result, args, how, width)
    s = result.summary or {}
    lines = [f"loaded    {result.path}  ({how})",
             f"          {s.get('type')}: {s.get('tensor_count', 0)} tensors, "
             f"{format_bytes(s.get('tensor_bytes'))}; peak memory of the load process "
             f"{format_bytes(result.peak_rss)}"]
    tensors = s.get("tensors") or []
    if tensors:
        kw = min(max(len(t["key"]) for t in tensors[:_SHOW_TENSORS]), 60)
        for t in tensors[:_SHOW_TENSORS]:
            shape = "?" if t["shape"] is None else str(list(t["shape"]))
            lines.append(f"  {t['key']:<{kw}}  {shape:<18} {t['dtype']:<10} {t['device']}")
        more = s.get("tensor_count", len(tensors)) - _SHOW_TENSORS
        if more > 0:
            lines.append(f"  ... and {more} more (--json lists them all)")
    other = s.get("other") or {}
    if other:
        text = ", ".join(f"{k}={v}" for k, v in list(other.items())[:12])
        lines.append(textwrap.fill(f"other: {text}", width, initial_indent="  ",
                                   subsequent_indent="    "))
    lines.extend(f"  warning: {w}" for w in result.warnings)
    if result.saved:
        sv = result.saved
        lines.append(f"saved     {sv['path']}: {sv['tensors']} tensors, "
                     f"{format_bytes(sv['bytes'])}"
                     + (f", {sv['aliases']} shared names as aliases" if sv.get("aliases") else ""))
        lines.extend(f"  not saved: {why}" for why in sv.get("skipped") or [])
        lines.append(f"          next: pttui inspect {shlex.quote(sv['path'])}")
    network = pol.get("network")
    if network:
        lines.append(f"  network of the load process: {network}")
    return "\n".join(lines)


def _render_failure(result, args, how: str, width: int) -> str:  # noqa: ANN001
    f = result.failure
    wrap = textwrap.TextWrapper(width, initial_indent="why:      ", subsequent_indent=" " * 10)
    lines = [f"FAILED    {result.path}: {f.kind}  ({how})"]
    if f.headline and f.message:
        lines.append(f"torch:    {f.error_type + ': ' if f.error_type else ''}{f.headline}")
    lines.extend(wrap.wrap(f.explanation))
    if f.fixes:
        lines.append("try:")
    for fx in f.fixes:
        cmd = _fix_command(args, fx)
        note = textwrap.fill(fx.description, width, initial_indent="      ",
                             subsequent_indent="      ")
        if cmd:
            lines.append(f"  {cmd}")
            lines.append(note)
        else:
            lines.append(textwrap.fill(fx.description, width, initial_indent="  - ",
                                       subsequent_indent="    "))
            if fx.code:
                lines.append(f"      {fx.code}")
    return "\n".join(lines)


def _fix_command(args: argparse.Namespace, fix) -> str | None:  # noqa: ANN001 - Fix
    """The ``pttui load`` command line that applies ``fix``; None if no option does."""
    from pttui.core.load import LoadPolicy

    policy = LoadPolicy(weights_only=not args.unsafe, allow_globals=tuple(args.allow),
                        map_location=args.map_location, mmap=args.mmap)
    words = policy.fix_options(fix, force=args.force)
    if words is None:
        return None
    timeout = ["--timeout", f"{args.timeout:g}"] if args.timeout else []
    return shlex.join(["pttui", "load", args.path, *words, *timeout])
