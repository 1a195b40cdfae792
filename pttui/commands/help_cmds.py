"""``help`` (generated from the same specs the parser and the completer use) and ``quit``."""

from __future__ import annotations

from rich.text import Text

from pttui.commands import render as rd
from pttui.commands.parser import Arg, Spec
from pttui.commands.registry import Call, command, lookup, specs
from pttui.core.base import ReadError


@command(Spec("help", "list the commands, or explain one", (Arg("COMMAND", "command",
                                                                optional=True),)))
def help_(call: Call) -> object:
    name = call.args["command"]
    if not name:
        t = rd.table("command", "what it does")
        for spec in specs():
            t.add_row(Text(spec.name), spec.summary)
        return call.result("commands (`help COMMAND` for one; Tab completes)", t,
                           commands=[s.name for s in specs()])
    spec = lookup(name)
    if spec is None:
        raise ReadError(f"help: no command `{name}` (`help` lists them)")
    res = call.result(spec.usage(), Text(spec.summary), command=spec.name,
                      usage=spec.usage())
    if spec.help:
        res.add(Text(spec.help))
    rows = [(a.name, a.help or ("one of " + ", ".join(a.choices) if a.choices else ""))
            for a in spec.args if a.help or a.choices]
    rows += [(o.name + (f" {o.metavar}" if o.metavar else ""), o.help) for o in spec.opts]
    if rows:
        res.add(rd.pairs(rows))
    if spec.aliases:
        res.add(rd.note("also: " + ", ".join(spec.aliases)))
    res.add(*(rd.note(f"e.g.  {ex}") for ex in spec.examples))
    return res


@command(Spec("quit", "leave the shell (Ctrl-D too)", aliases=("exit",)))
def quit_(call: Call) -> object:
    res = call.result("")
    res.quit = True
    return res
