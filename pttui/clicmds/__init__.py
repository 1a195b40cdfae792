"""One module per ``pttui`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``.

Modules are imported only when their command runs, so ``pttui --help`` stays fast.
``pttui shell`` starts the shell, another front: its module lives there
(``pttui.shell.subcommand``), so no front imports another.
"""

# subcommand name -> its module; the order is the order in --help
COMMANDS: dict[str, str] = {
    "inspect": "pttui.clicmds.inspect",
    "check": "pttui.clicmds.check",
    "fix": "pttui.clicmds.fix",
    "diff": "pttui.clicmds.diff",
    "recipe": "pttui.clicmds.recipe",
    "load": "pttui.clicmds.load",
    "devices": "pttui.clicmds.devices",
    "shell": "pttui.shell.subcommand",
}
