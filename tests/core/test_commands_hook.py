"""``harness_register_commands``: plugins add CLI commands; clashes are errors naming both sides; a
broken plugin costs a warning, never the built-in commands."""

from __future__ import annotations

import re
import types

import click
import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.cli import cli
from harness.errors import PluginError
from harness.plugins import load_commands

BUILT_IN_COMMANDS = sorted(cli.commands)

# Commands built-in plugins register through the hook (reporters: harness report, harness leaderboard,
# harness compare; figures: harness show, harness diagnose).
PLUGIN_COMMANDS = ["compare", "diagnose", "leaderboard", "report", "show"]


def command_plugin(name: str, *commands) -> types.SimpleNamespace:
    """A namespace plugin whose harness_register_commands registers ``commands``."""
    def register_commands(register):
        for command in commands:
            register(command)
    return types.SimpleNamespace(__name__=name, harness_register_commands=hookimpl(register_commands))


@click.command("greet")
@click.argument("who")
@click.option("--shout", is_flag=True, help="Upper-case the greeting.")
def greet(who: str, shout: bool) -> None:
    """Greet WHO (a test command)."""
    text = f"hello {who}"
    click.echo(text.upper() if shout else text)


@click.group("tools")
def tools() -> None:
    """A group of test commands."""


@tools.command("fail")
def tools_fail() -> None:
    """Fail the way user errors fail."""
    from harness.errors import HarnessError

    raise HarnessError("tools fail: this input is bad")


def test_a_plugin_command_runs_and_shows_in_help(harness_plugin):
    harness_plugin(command_plugin("greeter", greet, tools))
    runner = CliRunner()
    result = runner.invoke(cli, ["greet", "ada", "--shout"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "HELLO ADA\n"
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0 and listing.stderr == ""
    assert re.search(r"^  greet +Greet WHO \(a test command\)\.$", listing.stdout, re.MULTILINE)
    assert re.search(r"^  tools +A group of test commands\.$", listing.stdout, re.MULTILINE)
    for name in BUILT_IN_COMMANDS:
        assert f"  {name} " in listing.stdout
    # a plugin group's subcommands work, and HarnessError is one line and exit code 2 there too
    failed = runner.invoke(cli, ["tools", "fail"])
    assert failed.exit_code == 2
    assert failed.stderr == "error: tools fail: this input is bad\n"


def test_plugin_commands_are_gone_after_the_test_that_registered_them():
    result = CliRunner().invoke(cli, ["greet", "ada"])
    assert result.exit_code == 2 and "No such command 'greet'" in result.stderr
    names = set(load_commands(cli.commands))
    assert "greet" not in names and set(PLUGIN_COMMANDS) <= names


def test_load_commands_records_plugin_and_distribution(harness_plugin):
    harness_plugin(command_plugin("greeter", greet))
    (name, entry), = ((n, e) for n, e in load_commands(cli.commands).items() if e.distribution is None)
    assert (name, entry.command, entry.plugin, entry.distribution) == ("greet", greet, "greeter", None)


def test_a_command_clashing_with_a_built_in_names_the_core_and_the_plugin(harness_plugin):
    run = click.Command("run", callback=lambda: click.echo("the plugin's run"))
    harness_plugin(command_plugin("harness_myrun", run))
    with pytest.raises(PluginError) as info:
        load_commands(cli.commands)
    assert str(info.value).startswith("command 'run' registered twice: by the harness core and by plugin "
                                      "'harness_myrun'")


def test_two_plugins_registering_one_command_name_are_named(harness_plugin):
    harness_plugin(command_plugin("first_plugin", greet))
    harness_plugin(command_plugin("second_plugin", click.Command("greet")))
    # pluggy calls the plugin registered last first
    with pytest.raises(PluginError, match="command 'greet' registered twice: by plugin 'second_plugin' and "
                                          "by plugin 'first_plugin'"):
        load_commands(cli.commands)


@pytest.mark.parametrize("thing, message", [
    (lambda: "greet", "plugin 'odd' handed str to register in harness_register_commands; expected a click.Command"),
    (lambda: click.Command(None), "plugin 'odd' registered a command without a name"),
])
def test_register_rejects_what_is_not_a_named_command(harness_plugin, thing, message):
    harness_plugin(command_plugin("odd", thing()))
    with pytest.raises(PluginError, match=message):
        load_commands(cli.commands)


@pytest.mark.parametrize("plugin, warning", [
    (command_plugin("harness_myrun", click.Command("run")),
     "warning: plugin commands not loaded: command 'run' registered twice: by the harness core and by plugin "
     "'harness_myrun'"),
    (types.SimpleNamespace(__name__="crashing", harness_register_commands=hookimpl(
        lambda register: (_ for _ in ()).throw(RuntimeError("boom\nsecond line")))),
     "warning: plugin commands not loaded: boom second line"),
])
def test_a_broken_plugin_leaves_the_built_ins_usable(harness_plugin, tmp_path, plugin, warning):
    harness_plugin(plugin)
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0
    assert listing.stderr.startswith(warning) and listing.stderr.count("\n") == 1  # one line
    for name in BUILT_IN_COMMANDS:
        assert f"  {name} " in listing.stdout
    # a built-in command does not even load the plugins' commands, so it gets no warning
    result = runner.invoke(cli, ["results", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "warning" not in result.stderr
    # the built-in `run` is the core's even though the plugin tried to register its own
    result = runner.invoke(cli, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "suite file not found" in result.stderr


def test_a_bad_plugin_list_is_a_warning_for_commands(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "mnistt")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "Commands:" in result.stdout
    assert result.stderr == ("warning: plugin commands not loaded: HARNESS_LOAD_PLUGINS/HARNESS_BLOCK_PLUGINS "
                             "name unknown plugin 'mnistt'; did you mean 'mnist'?\n")


def test_trace_hooks_reports_registered_commands(harness_plugin, monkeypatch, capsys):
    harness_plugin(command_plugin("greeter", greet, tools))
    monkeypatch.setenv("HARNESS_TRACE_HOOKS", "1")
    load_commands(cli.commands)
    lines = [line for line in capsys.readouterr().err.splitlines() if "harness_register_commands" in line]
    built_in = {line for line in lines if "(robustness-harness)" in line}
    assert "harness hook: harness_register_commands of plugin 'figures' (robustness-harness) registered " \
           "show, diagnose" in built_in
    assert any(line.startswith("harness hook: harness_register_commands of plugin 'reporters' (robustness-harness) "
                               "registered report, leaderboard") for line in built_in)
    assert [line for line in lines if line not in built_in] == [
        "harness hook: harness_register_commands of plugin 'greeter' (no distribution) registered greet, tools"]


def test_a_class_plugin_command_and_a_temporary_name(harness_plugin):
    class Plugin:
        @hookimpl
        def harness_register_commands(self, register):
            register(greet)

    assert harness_plugin(Plugin()) == "Plugin"
    with pytest.raises(PluginError, match="temporary plugin named 'Plugin' is already registered"):
        harness_plugin(Plugin())
    assert harness_plugin(Plugin(), name="second") == "second"
    with pytest.raises(PluginError, match="command 'greet' registered twice: by plugin 'second' and by plugin "
                                          "'Plugin'"):
        load_commands(cli.commands)


def test_harness_plugins_lists_plugin_commands(harness_plugin):
    import json

    harness_plugin(command_plugin("greeter", greet))
    runner = CliRunner()
    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert [r for r in json.loads(result.stdout) if r["kind"] == "command" and r["distribution"] is None] == [
        {"kind": "command", "name": "greet", "key": "greet", "plugin": "greeter", "distribution": None,
         "description": "Greet WHO (a test command).", "defaults": {}, "optional": {}, "presets": {}}]
    table = runner.invoke(cli, ["plugins"])
    assert re.search(r"command +│ greet +│ greeter +│ - +│ Greet WHO", table.stdout), table.stdout


def test_harness_plugins_reports_a_clash_as_an_error(harness_plugin):
    harness_plugin(command_plugin("harness_myrun", click.Command("run")))
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: command 'run' registered twice: by the harness core and by plugin "
                                    "'harness_myrun'") and result.stderr.count("\n") == 1
