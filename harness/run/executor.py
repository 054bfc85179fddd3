"""Which executor runs a suite's cells, with which options: :func:`pick_executor` is the one place
that chooses (``--executor NAME``, else the registered executor that declares itself the default),
and :func:`executor_options` resolves ``--executor-option KEY=VALUE`` like every plugin's options
(:mod:`harness.suite.resolve`: typed like the executor's defaults, then checked by it)."""

from __future__ import annotations

from typing import Any

from harness.api import Executor
from harness.errors import HarnessError
from harness.registry import Registry, did_you_mean
from harness.suite.resolve import OptionError, resolve_options, split_pairs


def pick_executor(registry: Registry, name: str | None = None, needed_by: str | None = None) -> Executor:
    """The registered executor ``name``; None: the one that declares itself the ``default``. Without
    exactly one default, one line saying so: for ``harness run`` (``needed_by`` None) with the option
    that chooses; for ``needed_by`` (a command or function with no such option, e.g. ``harness
    eval``) with how to leave one default."""
    if name is not None:
        if name not in registry.executors.names():
            raise HarnessError(f"--executor {name}: unknown executor{did_you_mean(name, registry.executors.names())}")
        return registry.executors.get(name)
    defaults = [e.obj.name for e in registry.executors.entries() if e.obj.default]
    if len(defaults) == 1:
        return registry.executors.get(defaults[0])
    known = ", ".join(registry.executors.names()) or "none"
    if needed_by is not None:
        found = (f"executors {', '.join(defaults)} each declare themselves" if defaults else
                 f"no registered executor ({known}) declares itself")
        raise HarnessError(f"{needed_by} runs its cells on the default executor, but {found} the default; leave "
                           f"one with HARNESS_BLOCK_PLUGINS / HARNESS_LOAD_PLUGINS, or run the suite it writes "
                           f"with `harness run SUITE --executor NAME`")
    if defaults:
        raise HarnessError(f"executors {', '.join(defaults)} each declare themselves the default; pass --executor "
                           f"NAME or block one with HARNESS_BLOCK_PLUGINS")
    raise HarnessError(f"no registered executor is the default (registered: {known}); pass --executor NAME, "
                       f"or let HARNESS_LOAD_PLUGINS load the plugin of an executor that declares default=True")


def executor_options(spec: Executor, given: dict[str, Any] | None = None, text: bool = False) -> dict[str, Any]:
    """``spec``'s options: ``given`` over its defaults, checked (unknown keys, types, its ``check``);
    ``text``: the values are command-line strings."""
    try:
        return resolve_options(spec, given or {}, f"executor '{spec.name}'", text=text)
    except OptionError as exc:
        raise HarnessError(f"--executor-option {exc}") from None


def parse_executor_options(spec: Executor, pairs: tuple[str, ...] = ()) -> dict[str, Any]:
    """``--executor-option KEY=VALUE`` strings as ``spec``'s options (the ``ray`` executor's check
    says when Ray is not installed)."""
    try:
        given: dict[str, Any] = split_pairs(pairs, "--executor-option")
    except OptionError as exc:
        raise HarnessError(exc.message) from None
    return executor_options(spec, given, text=True)
