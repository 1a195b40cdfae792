"""The shell end to end: prompt_toolkit's pipe input in process (fast), and once through
a real pseudo-terminal with pexpect (Tab, the toolbar, Ctrl-C, Ctrl-D, history)."""

from __future__ import annotations

import io
import os
import re
import sys
import time

import pytest
import torch
import torchvision
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from pttui.commands import Context, run_line
from pttui.shell.app import Shell, toolbar
from pttui.shell.output import make_console

from tests.helpers import ROOT, SAMPLES
from tests.test_import_hygiene import _heavy, _modules_after

DP = SAMPLES / "squeezenet1_1_dataparallel.pt"


def drive(text: str, ctx: Context | None = None) -> tuple[int, str, Context]:
    """Type ``text`` into an in-process shell; returns exit code, output, context."""
    ctx = ctx or Context()
    out = io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(text)
        shell = Shell(ctx, make_console(out), history=InMemoryHistory(), input=inp,
                      output=DummyOutput())
        rc = shell.run()
    return rc, out.getvalue(), ctx


def assert_loads_into_squeezenet(path) -> None:
    model = torchvision.models.squeezenet1_1(weights=None)
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)


def test_repair_through_the_prompt(tmp_path):
    out_file = tmp_path / "fixed.pt"
    rc, out, ctx = drive(f"open {DP}\rmodel torchvision:squeezenet1_1\rsuggest\r"
                         f"apply 1\rexport {out_file}\r\x04")
    assert rc == 0
    assert "1 suggestion for torchvision squeezenet1_1" in out
    assert "strict load: OK" in out and f"wrote {out_file}" in out
    assert_loads_into_squeezenet(out_file)
    assert ctx.session.report.strict_ok


def test_ctrl_c_at_the_prompt_clears_the_line_and_quit_leaves():
    rc, out, _ = drive("this is not run\x03status\rquit\rstatus\r")
    assert rc == 0
    assert "not run" not in out and "unknown command" not in out
    assert out.count("none (`open PATH`)") == 1  # the status after quit never ran


def test_errors_print_one_line_and_the_shell_goes_on():
    rc, out, _ = drive("sugest\rls\r'unclosed\rhelp tree\r\x04")
    assert rc == 0
    assert "error: unknown command `sugest`; did you mean `suggest`?" in out
    assert "error: no checkpoint is open; run `open PATH` first" in out
    assert "close the quote" in out and "tree [PREFIX] [--depth N]" in out
    assert "Traceback" not in out


def test_toolbar_shows_file_target_coverage_and_recipe():
    ctx = Context()
    assert "open PATH" in "".join(t for _, t in toolbar(ctx))
    run_line(ctx, f"open {DP}")
    run_line(ctx, "model torchvision:squeezenet1_1")
    text = "".join(t for _, t in toolbar(ctx))
    assert "squeezenet1_1_dataparallel.pt [(root)]" in text
    assert "model: torchvision squeezenet1_1 | 0/52 keys does not load | recipe: 0 steps" in text
    run_line(ctx, "rename ^module\\. ''")
    assert "52/52 keys loads | recipe: 1 step " in "".join(t for _, t in toolbar(ctx))


def _bar(ctx, width=None) -> str:
    return "".join(t for _, t in toolbar(ctx, width))


def test_toolbar_shortens_step_by_step_to_fit_narrow_panes():
    """File, model, coverage and recipe length stay visible down to 40 columns: labels
    go first, then the container, the model's family, the verdict's words, and at last
    the names are cut with an ellipsis (the file keeps its suffix)."""
    ctx = Context()
    assert _bar(ctx, 60) == " no file open: `open PATH` · `help` lists the commands"
    assert _bar(ctx, 30) == " no file open: `open PATH`"
    for line in (f"open {DP}", "model torchvision:squeezenet1_1", "rename ^module\\. ''",
                 "cast float16"):
        assert run_line(ctx, line).ok, line
    assert _bar(ctx) == _bar(ctx, 200) == (
        " squeezenet1_1_dataparallel.pt [(root)] | model: torchvision squeezenet1_1 | "
        "52/52 keys loads | recipe: 2 steps ")
    assert _bar(ctx, 100) == (" squeezenet1_1_dataparallel.pt [(root)] | torchvision "
                              "squeezenet1_1 | 52/52 keys loads | recipe 2")
    assert _bar(ctx, 80) == " squeezenet1_1_dataparallel.pt | squeezenet1_1 | 52/52 loads | recipe 2"
    assert _bar(ctx, 60) == " squeezene…allel.pt | squeezenet1_1 | 52/52 loads | recipe 2"
    assert _bar(ctx, 40) == " sque….pt|squeezen…|52/52 loads|recipe 2"
    assert run_line(ctx, "model torchvision:squeezenet1_1 num_classes=10").ok
    assert _bar(ctx, 80) == (" squeezenet1_…aparallel.pt | squeezenet1_1(num_classes… | "
                             "50/52 fails | recipe 2")
    assert _bar(ctx, 60) == " squeeze…llel.pt | squeezenet1_1(n… | 50/52 fails | recipe 2"
    for width in range(24, 141):
        text = _bar(ctx, width)
        assert len(text) <= width, (width, text)
        assert "50/52" in text and ("recipe 2" in text or "recipe: 2 steps" in text), \
            (width, text)
        if width >= 31:
            assert ".pt" in text and "squeez" in text, (width, text)


def test_toolbar_keeps_the_verdict_style_when_shortened():
    ctx = Context()
    run_line(ctx, f"open {DP}")
    run_line(ctx, "model torchvision:squeezenet1_1")
    for width in (140, 80, 60, 30):
        styles = {t.strip(): st for st, t in toolbar(ctx, width)}
        assert any(st == "class:bad" for st in styles.values()), (width, styles)


def test_shell_help_imports_no_torch_and_commands_no_ui():
    code = ("from pttui.cli import main\ntry:\n    main(['shell', '--help'])\n"
            "except SystemExit:\n    pass")
    assert _heavy(_modules_after(code)) == []
    code = ("from pttui.commands import Context, run_line\n"
            "assert run_line(Context(), 'help').ok")
    mods = _modules_after(code)
    assert _heavy(mods) == [] and "pttui.commands.io_cmds" in mods


pexpect = pytest.importorskip("pexpect")


def test_real_terminal_session(tmp_path):
    """Tab completes, the toolbar shows the state, Ctrl-C stops a long command without
    losing the session, Ctrl-D leaves; the history file is written."""
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm-256color",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("NO_COLOR", None)
    out_file = tmp_path / "out.safetensors"
    child = pexpect.spawn(sys.executable, ["-m", "pttui.cli", "shell", str(DP)], env=env,
                          cwd=str(tmp_path), encoding="utf-8", timeout=90, dimensions=(30, 140))

    def prompt() -> None:  # answer prompt_toolkit's cursor position request, like a terminal
        child.expect(r"\x1b\[6n")
        child.send("\x1b[20;1R")
        child.expect("pttui>")

    try:
        prompt()
        child.expect("recipe: 0 steps")
        child.sendline("model torchvision:squeezenet1_1")
        child.expect("coverage")
        prompt()
        child.expect("does not load")
        child.send("sugg")
        time.sleep(0.5)
        child.send("\t")  # completes to `suggest`
        time.sleep(0.3)
        child.send("\r")
        child.expect("apply N")
        prompt()
        child.sendline("apply 1")
        child.expect("strict load: OK")
        prompt()
        child.expect("52/52 keys")
        child.sendline("load")
        child.expect("Ctrl-C stops it")
        time.sleep(0.3)
        child.sendintr()
        child.expect("load: interrupted")
        prompt()
        child.sendline(f"export {out_file}")
        child.expect("verified")
        prompt()
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = (tmp_path / "state" / "pttui" / "history").read_text()
    assert "+model torchvision:squeezenet1_1" in history and "+apply 1" in history
    from safetensors.torch import load_file

    torchvision.models.squeezenet1_1(weights=None).load_state_dict(load_file(out_file))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")


def test_narrow_terminal_and_a_bad_startup_file(tmp_path):
    """At 60 columns the toolbar still shows file, model, coverage and recipe length;
    a file that cannot be opened at startup leaves the shell open with nothing in it,
    where `open` opens another (a script would stop instead, with exit 2)."""
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm-256color",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("NO_COLOR", None)
    seen = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "pttui.cli", "shell",
                                           str(SAMPLES / "truncated.pt")], env=env,
                          cwd=str(tmp_path), encoding="utf-8", timeout=60, dimensions=(24, 60))
    child.logfile_read = seen

    def prompt() -> None:
        child.expect(r"\x1b\[6n")
        child.send("\x1b[20;1R")
        child.expect("pttui>")

    def screen_since(mark: int) -> str:
        return _ANSI.sub("", seen.getvalue()[mark:])

    try:
        child.expect("error: ")
        child.expect("nothing open")
        prompt()
        child.expect("no file open: `open PATH` · `help` lists the commands")
        child.sendline(f"open {DP}")
        child.expect("opened")
        prompt()
        child.sendline("model torchvision:squeezenet1_1")
        child.expect("coverage")
        prompt()
        child.sendline("rename '^module\\.' ''")
        child.expect("strict load: OK")
        mark = len(seen.getvalue())
        prompt()
        child.expect("recipe 1")
        child.expect(r"\?25h")  # the toolbar drawn to its end
        # the last column stays free (prompt_toolkit draws it apart; terminals wrap there)
        bar = " squeezen…allel.pt | squeezenet1_1 | 52/52 loads | recipe 1"
        assert len(bar) == 59 and bar in screen_since(mark)
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
