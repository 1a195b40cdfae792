"""Script mode (a file or a pipe, stop at the first error with exit 2), interrupting a
running command, history that cannot be written, and output that degrades."""

from __future__ import annotations

import _thread
import io
import threading
import time

import pytest
import torch
import torchvision

from pttui.commands import Context, run_line
from pttui.commands import registry
from pttui.core.load.policy import LoadPolicy
from pttui.commands.parser import Spec
from pttui.commands.result import CommandResult
from pttui.shell import main
from pttui.shell.history import SafeFileHistory, make_history
from pttui.shell.output import make_console
from pttui.shell.runner import run_interruptible

from tests.helpers import SAMPLES, run_main

DP = SAMPLES / "squeezenet1_1_dataparallel.pt"


def run(script_text: str, tmp_path, path=DP, **kw) -> tuple[int, str, str]:
    script = tmp_path / "fix.pttui"
    script.write_text(script_text)
    out, err = io.StringIO(), io.StringIO()
    rc = main(str(path) if path else None, str(script), stdout=out, stderr=err, **kw)
    return rc, out.getvalue(), err.getvalue()


def test_a_good_script_repairs_the_file(tmp_path):
    out_file = tmp_path / "fixed.pt"
    rc, out, err = run(f"# fix a DataParallel file\nmodel torchvision:squeezenet1_1\n\n"
                       f"suggest\napply 1\ncheck --assert\nexport {out_file}\n", tmp_path)
    assert (rc, err) == (0, "")
    assert "pttui> model torchvision:squeezenet1_1\n" in out  # each command is echoed
    assert "pttui> # fix" not in out  # comments and blank lines are skipped
    assert out.index("pttui> apply 1") < out.index("strict load: OK")
    model = torchvision.models.squeezenet1_1(weights=None)
    model.load_state_dict(torch.load(out_file, weights_only=True))


def test_an_error_stops_the_script_naming_the_line(tmp_path):
    rc, out, err = run("ls --limit 1\ninfo no.such.key\nls\n", tmp_path)
    assert rc == 2
    assert err == f"pttui: {tmp_path / 'fix.pttui'}, line 2: no tensor `no.such.key`; " \
                  "`find PATTERN` searches the keys\n"
    assert "pttui> info no.such.key" in out and out.count("pttui> ls") == 1
    rc, out, err = run("model torchvision:squeezenet1_1\ncheck --assert\nls\n", tmp_path)
    assert rc == 2 and "line 2: check: the checkpoint would not load" in err


def test_commands_on_stdin(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    stdin = io.StringIO("ls --limit 1\nstatus\nbogus\nstatus\n")
    rc = main(str(DP), stdin=stdin, stdout=out, stderr=err)
    assert rc == 2 and err.getvalue() == ("pttui: stdin, line 3: unknown command `bogus` "
                                          "(`help` lists the commands)\n")
    assert out.getvalue().count("pttui> status") == 1


def test_script_edge_cases(tmp_path):
    assert run("quit\nbogus\n", tmp_path)[0] == 0  # quit ends a script early
    rc, _, err = run("ls\n", tmp_path, path=tmp_path / "none.pt")
    assert rc == 2 and err.startswith("pttui: ") and "none.pt" in err
    out, err = io.StringIO(), io.StringIO()
    assert main(None, str(tmp_path / "missing.txt"), stdout=out, stderr=err) == 2
    assert "cannot read script" in err.getvalue() and "missing.txt" in err.getvalue()


def test_through_the_cli(capsys, tmp_path, monkeypatch):
    script = tmp_path / "s.pttui"
    script.write_text("find expand3x3.bias --limit 1\n")
    rc, out, err = run_main(capsys, "shell", str(DP), "--script", str(script))
    assert (rc, err) == (0, "") and "8 tensors match `expand3x3.bias`" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("containers\n"))
    rc, out, _ = run_main(capsys, "shell", str(DP))
    assert rc == 0 and "1 container" in out
    rc, _, err = run_main(capsys, "shell", "--bogus")
    assert rc == 2 and "unrecognized arguments" in err


# -- Ctrl-C while a command runs -----------------------------------------------------------

@pytest.fixture
def slow_command(monkeypatch):
    """A registered command that counts (cancellable) or sleeps (deaf to cancel)."""
    done = threading.Event()

    def handler(call):
        if call.args.get("deaf") is None:
            for i in range(200):
                call.report(i, 200)
                time.sleep(0.01)
        else:
            time.sleep(0.4)
        call.check_cancel()  # before changing anything
        call.session.policy = LoadPolicy(map_location="cpu")
        done.set()
        return CommandResult("slow", title="finished")

    from pttui.commands.parser import Arg

    spec = Spec("slow", "a test command", (Arg("DEAF", optional=True),), slow=True)
    monkeypatch.setitem(registry.SPECS, "slow", spec)
    monkeypatch.setitem(registry.HANDLERS, "slow", handler)
    return done


def interrupt_after(seconds: float) -> None:
    threading.Timer(seconds, _thread.interrupt_main).start()


def test_ctrl_c_cancels_a_running_command(slow_command):
    ctx = Context()
    seen = []
    interrupt_after(0.2)
    start = time.monotonic()
    r = run_interruptible(ctx, "slow", lambda *p: seen.append(p))
    assert r.status == "cancelled" and time.monotonic() - start < 1.5
    assert seen and ctx.session.policy == LoadPolicy()
    assert run_line(ctx, "status").ok  # the session goes on


def test_a_command_deaf_to_cancel_is_left_behind_and_changes_nothing(slow_command):
    ctx = Context()
    interrupt_after(0.1)
    r = run_interruptible(ctx, "slow yes", grace=0.05)
    assert r.status == "cancelled" and "stops in the background" in r.title
    time.sleep(0.6)
    assert not slow_command.is_set() and ctx.session.policy == LoadPolicy()


def test_an_uninterrupted_command_returns_its_result(slow_command):
    r = run_interruptible(Context(), "slow yes")
    assert r.title == "finished" and slow_command.is_set()


# -- history and output --------------------------------------------------------------------

def test_history_lives_in_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    h = make_history()
    h.append_string("ls")
    assert (tmp_path / "pttui" / "history").read_text().endswith("+ls\n")
    assert list(make_history().load_history_strings()) == ["ls"]


def test_history_that_cannot_be_written_breaks_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # a file: no folder can go there
    h = make_history()
    h.append_string("ls")
    assert list(h.load_history_strings()) == ["ls"]
    broken = SafeFileHistory(str(tmp_path / "no" / "such" / "history"))
    broken.store_string("ls")
    assert broken.failed and list(broken.load_history_strings()) == []


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env, colour", [({}, True), ({"NO_COLOR": "1"}, False),
                                         ({"TERM": "dumb"}, False)])
def test_colour_degrades(monkeypatch, env, colour):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ctx = Context()
    run_line(ctx, f"open {DP}")
    stream = Tty()
    from pttui.shell.output import show

    show(make_console(stream), run_line(ctx, "bogus"))
    assert ("\x1b[" in stream.getvalue()) is colour
    piped = io.StringIO()
    show(make_console(piped), run_line(ctx, "bogus"))
    assert "\x1b[" not in piped.getvalue()


# -- startup: the script is checked first; a bad file at a terminal keeps the shell -----

@pytest.mark.parametrize("make, words", [
    (lambda d: d / "nope.pttui", "No such file"),
    (lambda d: d, "is a folder, not a script file"),
    (lambda d: SAMPLES / "squeezenet1_1.pt", "looks like a checkpoint (torch-zip); give that "
                                             "as PATH, before --script"),
    (lambda d: (d / "bin.pttui").write_bytes(b"ls\x00\xff\xfe") and d / "bin.pttui",
     "holds binary data"),
])
def test_a_bad_script_fails_before_the_checkpoint_is_read(tmp_path, make, words):
    script = make(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    rc = main(str(DP), str(script), stdout=out, stderr=err)
    assert rc == 2 and out.getvalue() == ""  # nothing opened, nothing summarised
    assert err.getvalue().startswith(f"pttui: cannot read script {script}: ")
    assert words in err.getvalue() and err.getvalue().count("\n") == 1


def test_a_bad_startup_file_at_a_terminal_opens_an_empty_shell(monkeypatch):
    from pttui.shell import app

    seen = {}

    def run(self):
        seen["source"] = self.ctx.session.source
        seen["open"] = run_line(self.ctx, f"open {DP}").ok  # `open` works in it
        return 0

    monkeypatch.setattr(app.Shell, "run", run)
    out, err = io.StringIO(), io.StringIO()
    rc = main(str(SAMPLES / "truncated.pt"), stdin=Tty(), stdout=out, stderr=err,
              history=False)
    assert rc == 0 and seen == {"source": None, "open": True}
    text = out.getvalue()
    assert text.startswith("error: ") and "truncated.pt" in text
    assert "the shell starts with nothing open; `open PATH` opens a file" in text
    # a script or a pipe stops there instead (exit 2), as before
    out, err = io.StringIO(), io.StringIO()
    assert main(str(SAMPLES / "truncated.pt"), stdin=io.StringIO("ls\n"), stdout=out,
                stderr=err) == 2
    assert err.getvalue().startswith("pttui: ") and out.getvalue() == ""


def test_plain_output_has_no_trailing_spaces(tmp_path):
    rc, out, err = run("ls --limit 5\ncontainers\nstatus\nhelp\nhelp export\n"
                       "model torchvision:squeezenet1_1\nsuggest\ncheck\n", tmp_path,
                       path=SAMPLES / "tiny_vit_sharded" / "model.safetensors.index.json")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) > 60 and "metadata   {\"total_size\": 96936}" in lines
    assert [ln for ln in lines if ln != ln.rstrip()] == []
    assert "container  (root)" in lines  # the summary's padded row, now bare
