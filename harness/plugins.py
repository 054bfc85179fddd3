"""The plugin manager: loads the ``harness`` entry-point group and fills a :class:`Registry`.

Built-in plugins are ordinary entry points of this distribution, loaded exactly like third-party ones.
``HARNESS_LOAD_PLUGINS=a,b`` loads only the named entry points; ``HARNESS_BLOCK_PLUGINS=c`` skips some.
``HARNESS_TRACE_HOOKS=1`` prints every hook call and what it registered to stderr, for debugging.
:func:`temporary_plugin` adds a plugin object to every manager made while it is active (tests use it
through the ``harness_plugin`` fixture of :mod:`harness.testing`).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pluggy

from harness import PROJECT, hookspecs
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
            pm.register(_hashable(plugin), name=name)
        for plugin in extra:
            pm.register(_hashable(plugin), name=pm.get_canonical_name(plugin))
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


def _hashable(plugin: object) -> object:
    """``plugin``, or for a namespace (which pluggy cannot keep in its sets of plugins) a module
    holding the same attributes: the same hook implementation functions, packaged as pluggy expects."""
    try:
        hash(plugin)
        return plugin
    except TypeError:
        module = types.ModuleType(plugin_name(plugin))
        module.__dict__.update(vars(plugin))
        return module


class Plugins:
    """A loaded plugin manager and, recorded once at load, the distribution each plugin comes from.

    :meth:`call` calls a ``harness_register_*`` hook once per plugin that implements it, in pluggy's
    order (``tryfirst``, then the last registered first, then ``trylast``), each through pluggy with a
    ``register`` callback bound to that plugin: what a plugin registers is known by construction,
    and pluggy's hook implementations are left as they are. A register hook returns nothing, so there
    is nothing for a wrapper to wrap: a ``wrapper``/``hookwrapper`` implementation is an error.
    With ``HARNESS_TRACE_HOOKS`` set, pluggy's hook-call monitoring prints one line per plugin called
    and what it registered to stderr."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.distributions = {pm.get_name(plugin): dist.project_name for plugin, dist in pm.list_plugin_distinfo()}

    def call(self, hook: str, accept: Callable[[Any, str, str | None], str]) -> None:
        """Call ``hook`` with, for each plugin, ``register(obj)`` = ``accept(obj, plugin name,
        distribution or None)``, which validates and stores the object and returns its key."""
        implementations = getattr(self.pm.hook, hook).get_hookimpls()
        for impl in implementations:
            if impl.wrapper or impl.hookwrapper:
                raise PluginError(f"plugin '{impl.plugin_name}' implements {hook} as a hook wrapper; register "
                                  f"hooks return nothing to wrap, so implement it as a plain hook")
        registered: dict[str, list[str]] = {}
        undo = self._trace(hook, registered)
        try:
            for impl in reversed(implementations):  # pluggy's own calling order
                self._call_one(hook, impl, accept, registered.setdefault(impl.plugin_name, []))
        finally:
            undo()

    def _call_one(self, hook: str, impl, accept, keys: list[str]) -> None:
        name, distribution, open_ = impl.plugin_name, self.distributions.get(impl.plugin_name), [True]

        def register(obj):
            if not open_[0]:
                raise PluginError(f"{hook}'s register was called after the hook returned; call it inside the hook")
            keys.append(accept(obj, name, distribution))
        others = [plugin for _, plugin in self.pm.list_name_plugin() if plugin is not None and plugin is not impl.plugin]
        try:
            self.pm.subset_hook_caller(hook, remove_plugins=others)(register=register)
        finally:
            open_[0] = False

    def _trace(self, hook: str, registered: dict[str, list[str]]) -> Callable[[], None]:
        """Pluggy's hook-call monitoring, printing each call of ``hook`` (one plugin's) after it ran."""
        if os.environ.get("HARNESS_TRACE_HOOKS", "") in ("", "0"):
            return lambda: None

        def after(outcome, hook_name, impls, kwargs):
            if hook_name == hook:
                for impl in impls:
                    plugin = impl.plugin_name
                    print(f"harness hook: {hook} of plugin '{plugin}' "
                          f"({self.distributions.get(plugin) or 'no distribution'}) registered "
                          f"{', '.join(registered.get(plugin, [])) or 'nothing'}", file=sys.stderr)
        return self.pm.add_hookcall_monitoring(lambda *args: None, after)


def build_registry(plugins: Plugins) -> Registry:
    """Every kind's ``harness_register_<kind>`` hook, called with a register bound to each plugin,
    so each registered object records who registered it."""
    registry = Registry()
    for table in registry.tables():
        plugins.call(table.kind.hook, table.add)
    return registry


def load_registry(extra: Iterable[object] = (), load_entry_points: bool = True) -> Registry:
    return build_registry(Plugins(make_manager(load_entry_points=load_entry_points, extra=extra)))


@dataclass(frozen=True)
class PluginCommand:
    """A CLI command a plugin registered, and who registered it."""

    command: "click.Command"
    plugin: str
    distribution: str | None


def collect_commands(plugins: Plugins, existing: Iterable[str] = ()) -> dict[str, PluginCommand]:
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
    plugins.call("harness_register_commands", accept)
    return commands


def load_commands(existing: Iterable[str] = (), extra: Iterable[object] = (),
                  load_entry_points: bool = True) -> dict[str, PluginCommand]:
    return collect_commands(Plugins(make_manager(load_entry_points=load_entry_points, extra=extra)), existing)
