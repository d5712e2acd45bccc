"""`cnnzoo --help` points a newcomer at `cnnzoo run` with three examples, and every
subcommand's help ends with one; each example is a command line the parser accepts."""

from __future__ import annotations

import shlex

import pytest

from cnnzoo.cli.main import COMMANDS, EXAMPLES, build_parser, main


def _example_commands(text: str) -> list[list[str]]:
    """The `cnnzoo ...` command lines in an examples block (continuations joined)."""
    joined = text.replace("\\\n", " ")
    lines = [ln.split("#")[0].strip() for ln in joined.splitlines()]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("cnnzoo ")]


def test_top_level_help_ends_with_three_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    tail = out[out.index("examples:") :]
    commands = _example_commands(tail)
    assert len(commands) == 3
    # a local run on the demo data, a run on the user's folder, a cluster submit
    assert commands[0] == ["run"]
    assert commands[1][0] == "run" and "--data" in commands[1]
    assert commands[2][0] == "submit" and "--host" in commands[2]
    assert "cnnzoo run" in tail.splitlines()[-1]


@pytest.mark.parametrize("argv", _example_commands(EXAMPLES), ids=lambda a: a[0])
def test_top_level_examples_parse(argv):
    ns = build_parser().parse_args(argv)
    assert ns.command == argv[0]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.name)
def test_every_subcommand_help_ends_with_its_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd.name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-2] == "example:"
    argv = shlex.split(out[-1])
    assert argv[:2] == ["cnnzoo", cmd.name]
    ns = build_parser().parse_args(argv[1:])  # the example is a valid command line
    assert ns.command == cmd.name
