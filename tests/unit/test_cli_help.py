"""Every option and argument of every dumpbed command has help, and its help names its choices."""
from __future__ import annotations

import argparse

import pytest

from dumpbed import cli


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser and each subcommand's, by command line prefix."""
    top = cli.build_parser()
    found = {"dumpbed": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, parser in action.choices.items():
                found[f"dumpbed {name}"] = parser
    return found


PARSERS = _parsers()


def test_every_command_is_walked():
    assert set(PARSERS) == {"dumpbed", "dumpbed run", "dumpbed session", "dumpbed validate", "dumpbed show",
                            "dumpbed export", "dumpbed list", "dumpbed build-image", "dumpbed bench",
                            "dumpbed netdumpd", "dumpbed matrix", "dumpbed matrix-report"}


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"{name}: no help")
            continue
        text = parser._get_formatter()._expand_help(action)
        if isinstance(action, argparse._SubParsersAction):
            problems += [f"{name} {a.dest}: no help" for a in action._choices_actions if not a.help]
            choices = list(action.choices)
        else:
            choices = [str(c) for c in action.choices or []]
        problems += [f"{name}: help does not name the choice {c!r}" for c in choices if c not in text]
        takes_value = action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)
        if takes_value and action.option_strings and not (action.metavar or action.choices):
            problems.append(f"{name}: no metavar or choices to say what its value is")
    return problems


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_has_help(command):
    assert _undocumented(PARSERS[command]) == []


def test_the_walk_finds_an_option_without_help():
    parser = cli.build_parser()
    parser.add_argument("--undocumented")
    parser.add_argument("--mode", choices=["a", "b"], help="the mode: a only")
    assert _undocumented(parser) == ["--undocumented: no help", "--mode: help does not name the choice 'b'"]


def test_help_prints_for_every_command(capsys):
    for command in PARSERS:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command.split()[1:], "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {command}")
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for disk in cli.DISKS:
        assert disk in out
    assert "--version" in cli.build_parser().format_help()
