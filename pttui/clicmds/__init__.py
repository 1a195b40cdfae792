"""One module per ``pttui`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``.

Modules are imported only when their command runs, so ``pttui --help`` stays fast.
"""

# subcommand name -> module under pttui.clicmds; the order is the order in --help
COMMANDS: dict[str, str] = {
    "inspect": "inspect",
    "check": "check",
    "fix": "fix",
    "diff": "diff",
    "recipe": "recipe",
    "load": "load",
    "devices": "devices",
    "shell": "shell",
}
