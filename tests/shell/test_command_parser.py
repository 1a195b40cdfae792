"""The command grammar: words, options, one-line errors, help from the same specs."""

from __future__ import annotations

import pytest

from pttui.commands import Context, ParseError, lookup, parse, run_line, specs
from pttui.commands.parser import Arg, Opt, Spec, bind, split, split_partial, whole_number

SPEC = Spec("demo", "a demo", (Arg("PATH", "path"), Arg("REST", optional=True, many=True)),
            (Opt("--depth", "N", convert=whole_number), Opt("--raw"),
             Opt("--allow", "G", many=True), Opt("--format", "F", choices=("pt", "safetensors"))))


def test_words_are_shell_words():
    assert split("rename '^module\\.' ''") == ["rename", "^module\\.", ""]
    with pytest.raises(ParseError, match="close the quote"):
        split("open 'a.pt")


def test_split_partial_for_completion():
    assert split_partial("info feat") == (["info"], "feat")
    assert split_partial("info ") == (["info"], "")
    assert split_partial("open 'my fi") == (["open"], "my fi")
    assert split_partial("") == ([], "")


def test_bind_positionals_and_options():
    got = bind(SPEC, ["a.pt", "x", "y", "--depth", "2", "--raw", "--allow=a.B", "--allow", "c.D",
                      "--format", "pt"])
    assert got == {"path": "a.pt", "rest": ["x", "y"], "depth": 2, "raw": True,
                   "allow": ["a.B", "c.D"], "format": "pt"}
    assert bind(SPEC, ["a.pt"]) == {"path": "a.pt", "rest": [], "depth": None, "raw": False,
                                    "allow": [], "format": None}
    assert bind(SPEC, ["--", "--raw"])["path"] == "--raw"
    assert bind(SPEC, ["-1"])["path"] == "-1"  # a single dash starts no option


@pytest.mark.parametrize("words, message", [
    ([], "demo: missing PATH (usage: demo PATH [REST ...]"),
    (["a", "--dept", "1"], "unknown option --dept; did you mean --depth?"),
    (["a", "--depth"], "--depth needs a value"),
    (["a", "--depth", "x"], "--depth expects a whole number, got 'x'"),
    (["a", "--depth", "-2"], "expects a number >= 0"),
    (["a", "--raw=1"], "--raw takes no value"),
    (["a", "--format", "zip"], "--format must be one of pt, safetensors, not 'zip'"),
])
def test_bad_words_are_one_line_errors(words, message):
    with pytest.raises(ParseError) as err:
        bind(SPEC, words)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_too_many_words():
    with pytest.raises(ParseError, match="unexpected 'b c'"):
        bind(Spec("one", "", (Arg("X"),)), ["a", "b c"])


def test_usage_lists_everything():
    assert SPEC.usage() == ("demo PATH [REST ...] [--depth N] [--raw] [--allow G ...] "
                            "[--format F]")


def test_parse_finds_commands_and_aliases():
    assert parse("") is None and parse("   ") is None and parse("# a comment") is None
    spec, args = parse("tree features --depth 2")
    assert spec.name == "tree" and args == {"prefix": "features", "depth": 2, "raw": False}
    assert parse("exit")[0].name == "quit"
    with pytest.raises(ParseError, match="did you mean `suggest`"):
        parse("sugest")


def test_every_command_the_issue_names_exists():
    wanted = ("open ls tree find info stats containers select model check suggest apply rename "
              "drop accept-missing undo redo recipe load export devices diff help quit").split()
    have = {s.name for s in specs()}
    assert set(wanted) <= have
    for name in have:  # help works for each, and each has a one-line summary
        assert lookup(name).summary and "\n" not in lookup(name).summary


def test_run_line_turns_parse_errors_into_results():
    r = run_line(Context(), "tree --depth lots")
    assert r.status == "error" and r.title.startswith("tree: --depth expects")
    assert run_line(Context(), "").ok
