"""Command-line options shared by the core's commands and the plugins' (``harness_register_commands``):
import them from here, never from :mod:`harness.cli`, so a plugin depends on a small public module and
not on the command-line program."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.errors import HarnessError
from harness.kit.paths import user_cache
from harness.kit.threads import set_math_environment

# The `harness` program's math settings (harness/kit/threads.py): harness.cli imports this module before
# any command imports torch, and plugins that add commands import it too.
set_math_environment()


def default_data_root() -> Path:
    """The data root when neither --data-dir nor $HARNESS_DATA names one."""
    return user_cache("data")


def data_root(option: str | None) -> Path:
    """--data-dir, else $HARNESS_DATA, else the user's cache dir (created on demand). A root the
    user named must exist: a typo should not silently download a second copy elsewhere."""
    for value, source in ((option, "--data-dir"), (os.environ.get("HARNESS_DATA"), "HARNESS_DATA")):
        if value:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise HarnessError(f"{source} {root}: data root does not exist; create it, or unset "
                                   f"{source} to use {default_data_root()}")
            return root
    root = default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
    help="Data root (default: $HARNESS_DATA, else $XDG_CACHE_HOME/robustness-harness/data, "
         "~/.cache/robustness-harness/data when XDG_CACHE_HOME is unset).")

device_option = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


class Group(click.Group):
    """A command group whose ``--help`` lists each command with its whole first sentence, wrapped,
    where click would cut it at the screen's width with "..."."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
