"""The plugin manager: loads the ``harness`` entry-point group and fills a :class:`Registry`.

Built-in plugins are ordinary entry points of this distribution, loaded exactly like third-party ones.
``HARNESS_LOAD_PLUGINS=a,b`` loads only the named entry points; ``HARNESS_BLOCK_PLUGINS=c`` skips some.
``HARNESS_TRACE_HOOKS=1`` prints every hook call and what it registered to stderr, for debugging.
:func:`temporary_plugin` adds a plugin object to every manager made while it is active (tests use it
through the ``harness_plugin`` fixture of :mod:`harness.testing`).
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pluggy

from harness import PROJECT, hookspecs
from harness.api import KINDS
from harness.errors import PluginError
from harness.registry import Registry, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import click

DISTRIBUTION = "robustness-harness"  # the distribution whose entry points are the built-ins

# Plugin objects registered for a while by temporary_plugin(), by name, in registration order.
_temporary: dict[str, object] = {}


def _names_from_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda ep: ep.name)


def builtin_plugin_names() -> list[str]:
    """Entry-point names of the built-in plugins (those of this distribution), e.g. for
    ``HARNESS_LOAD_PLUGINS`` when third-party plugins must stay out."""
    return sorted(ep.name for ep in entry_points() if ep.dist is not None and ep.dist.name == DISTRIBUTION)


@contextmanager
def builtin_plugins_only() -> Iterator[None]:
    """Within the block, plugin managers load the built-in entry points and no other installed
    plugin (temporary plugins still count): for output that must not depend on what else is
    installed, such as generated docs and test fixtures."""
    saved = {var: os.environ.get(var) for var in ("HARNESS_LOAD_PLUGINS", "HARNESS_BLOCK_PLUGINS")}
    os.environ["HARNESS_LOAD_PLUGINS"] = ",".join(builtin_plugin_names())
    os.environ.pop("HARNESS_BLOCK_PLUGINS", None)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def plugin_name(plugin: object) -> str:
    """The name a plugin object is registered under when none is given: its ``__name__`` (modules,
    classes, objects that set one), else its class name."""
    return getattr(plugin, "__name__", None) or type(plugin).__name__


@contextmanager
def temporary_plugin(plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` (a module, class instance or namespace with ``hookimpl`` functions) in
    every plugin manager made inside the ``with`` block, the CLI's included; yields its name.
    It is removed on exit, even when the block raises."""
    name = name or plugin_name(plugin)
    if name in _temporary:
        raise PluginError(f"a temporary plugin named '{name}' is already registered; pass another name")
    _temporary[name] = plugin
    try:
        yield name
    finally:
        _temporary.pop(name, None)


def make_manager(load_entry_points: bool = True, extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, the allowed entry points, the temporary plugins and
    ``extra`` plugin objects."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        allow = _names_from_env("HARNESS_LOAD_PLUGINS")
        block = _names_from_env("HARNESS_BLOCK_PLUGINS") or set()
        available = {ep.name for ep in entry_points()}
        for name in sorted((allow or set()) | block):
            if name not in available:
                raise PluginError(f"HARNESS_LOAD_PLUGINS/HARNESS_BLOCK_PLUGINS name unknown plugin "
                                  f"'{name}'{did_you_mean(name, available)}")
        for name in available:
            if (allow is not None and name not in allow) or name in block:
                pm.set_blocked(name)  # pluggy then skips the entry point of that name
    try:
        if load_entry_points:
            pm.load_setuptools_entrypoints(PROJECT)
        for name, plugin in list(_temporary.items()):
            pm.register(plugin, name=name)
        for plugin in extra:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin hook not in the contract (see harness/hookspecs.py): {exc}") from None
    except ImportError as exc:
        raise PluginError(f"a plugin failed to import ({exc}); fix its installation or skip it with "
                          f"HARNESS_BLOCK_PLUGINS=NAME") from None
    except ValueError as exc:  # pluggy: the same plugin object or name registered twice
        raise PluginError(f"a plugin was registered twice ({exc}); load it either from its entry point "
                          f"or as a test plugin, not both") from None
    return pm


# The plugin whose hook implementation is running, while pluggy calls it (see _attribute).
_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("harness_hook_caller", default=None)


def _named(function: Callable, plugin: str, calls: list[str], generator: bool) -> Callable:
    """``function`` (a hook implementation) run with ``plugin`` as the current caller; a wrapper's
    generator has it at each of its steps, before and after its ``yield``."""
    if not generator:
        def call(*args, **kwargs):
            calls.append(plugin)
            token = _CALLER.set(plugin)
            try:
                return function(*args, **kwargs)
            finally:
                _CALLER.reset(token)
        return call

    def steps(*args, **kwargs):
        calls.append(plugin)
        inner, sent, thrown = function(*args, **kwargs), None, None
        while True:
            token = _CALLER.set(plugin)
            try:
                out = inner.throw(thrown) if thrown is not None else inner.send(sent)
            except StopIteration as stop:
                return stop.value
            finally:
                _CALLER.reset(token)
            try:
                sent, thrown = (yield out), None
            except BaseException as exc:  # noqa: BLE001 - handed to the wrapper, as pluggy would
                sent, thrown = None, exc
    return steps


def call_register_hook(pm: pluggy.PluginManager, hook: str,
                       accept: Callable[[Any, str, str | None], str]) -> None:
    """Call ``hook`` through pluggy (so ``tryfirst``/``trylast`` order and hook wrappers apply) with
    one ``register`` callback: ``register(obj)`` calls ``accept(obj, plugin name, distribution or
    None)`` for the plugin whose implementation is running, which validates and stores the object
    and returns its name. With ``HARNESS_TRACE_HOOKS`` set, one line per implementation called goes
    to stderr."""
    distributions = {pm.get_name(plugin): dist.project_name for plugin, dist in pm.list_plugin_distinfo()}
    trace = os.environ.get("HARNESS_TRACE_HOOKS", "") not in ("", "0")
    calls: list[str] = []
    registered: dict[str, list[str]] = {}

    def register(obj):
        plugin = _CALLER.get()
        if plugin is None:
            raise PluginError(f"{hook}'s register was called after the hook returned; call it inside the hook")
        registered.setdefault(plugin, []).append(accept(obj, plugin, distributions.get(plugin)))

    caller = getattr(pm.hook, hook)
    originals = [(impl, impl.function) for impl in caller.get_hookimpls()]
    for impl, function in originals:  # restored below: the manager's plugins are left as they were
        impl.function = _named(function, impl.plugin_name, calls, impl.hookwrapper or impl.wrapper)
    try:
        caller(register=register)
    finally:
        for impl, function in originals:
            impl.function = function
    if trace:
        for plugin in calls:
            print(f"harness hook: {hook} of plugin '{plugin}' ({distributions.get(plugin) or 'no distribution'}) "
                  f"registered {', '.join(registered.get(plugin, [])) or 'nothing'}", file=sys.stderr)


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every ``harness_register_<kind>`` implementation with a register bound to its plugin,
    so each registered object records who registered it."""
    registry = Registry()
    for kind in KINDS:
        def accept(obj, plugin, distribution, _kind=kind):
            registry.register(_kind, obj, plugin, distribution)
            return getattr(obj, "name", "?")
        call_register_hook(pm, f"harness_register_{kind}", accept)
    return registry


def load_registry(extra: Iterable[object] = (), load_entry_points: bool = True) -> Registry:
    return build_registry(make_manager(load_entry_points=load_entry_points, extra=extra))


@dataclass(frozen=True)
class PluginCommand:
    """A CLI command a plugin registered, and who registered it."""

    command: "click.Command"
    plugin: str
    distribution: str | None


def collect_commands(pm: pluggy.PluginManager, existing: Iterable[str] = ()) -> dict[str, PluginCommand]:
    """The commands of every ``harness_register_commands`` implementation, by name. ``existing``
    names the core's own commands; a plugin command with one of those names, or with the name of
    another plugin's command, is a :class:`PluginError` naming both."""
    import click

    core = set(existing)
    commands: dict[str, PluginCommand] = {}

    def accept(obj, plugin, distribution):
        if not isinstance(obj, click.Command):
            raise PluginError(f"plugin '{plugin}' handed {type(obj).__name__} to register in "
                              f"harness_register_commands; expected a click.Command or click.Group")
        name = obj.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a command without a name")
        if name in core:
            raise PluginError(f"command '{name}' registered twice: by the harness core and by plugin "
                              f"'{plugin}'; rename the plugin's command or block it with HARNESS_BLOCK_PLUGINS")
        if name in commands:
            raise PluginError(f"command '{name}' registered twice: by plugin '{commands[name].plugin}' and "
                              f"by plugin '{plugin}'; rename one or block a plugin with HARNESS_BLOCK_PLUGINS")
        commands[name] = PluginCommand(obj, plugin, distribution)
        return name
    call_register_hook(pm, "harness_register_commands", accept)
    return commands


def load_commands(existing: Iterable[str] = (), extra: Iterable[object] = (),
                  load_entry_points: bool = True) -> dict[str, PluginCommand]:
    return collect_commands(make_manager(load_entry_points=load_entry_points, extra=extra), existing)
