"""The plugin manager: loads the ``harness`` entry-point group and fills a :class:`Registry`.

Built-in plugins are ordinary entry points of this distribution, loaded exactly like third-party ones.
``HARNESS_LOAD_PLUGINS=a,b`` loads only the named entry points; ``HARNESS_BLOCK_PLUGINS=c`` skips some.
``HARNESS_TRACE_HOOKS=1`` prints every hook call and what it registered to stderr, for debugging.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Iterable

import pluggy

from harness import PROJECT, hookspecs
from harness.api import KINDS
from harness.errors import PluginError
from harness.registry import Registry, did_you_mean


def _names_from_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda ep: ep.name)


def make_manager(load_entry_points: bool = True, extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, the allowed entry points and ``extra`` plugin objects."""
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
        for plugin in extra:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin hook not in the contract (see harness/hookspecs.py): {exc}") from None
    except ImportError as exc:
        raise PluginError(f"a plugin failed to import ({exc}); fix its installation or skip it with "
                          f"HARNESS_BLOCK_PLUGINS=NAME") from None
    return pm


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every ``harness_register_<kind>`` implementation with a register bound to its plugin,
    so each registered object records who registered it."""
    registry = Registry()
    distributions = {pm.get_name(plugin): dist.project_name for plugin, dist in pm.list_plugin_distinfo()}
    trace = os.environ.get("HARNESS_TRACE_HOOKS", "") not in ("", "0")
    for kind in KINDS:
        caller = getattr(pm.hook, f"harness_register_{kind}")
        for impl in caller.get_hookimpls():  # pluggy lists them in plugin load order
            registered: list[str] = []

            def register(obj, _kind=kind, _plugin=impl.plugin_name, _done=registered):
                registry.register(_kind, obj, _plugin, distributions.get(_plugin))
                _done.append(getattr(obj, "name", "?"))
            impl.function(register=register)
            if trace:
                print(f"harness hook: harness_register_{kind} of plugin '{impl.plugin_name}' "
                      f"({distributions.get(impl.plugin_name) or 'no distribution'}) registered "
                      f"{', '.join(registered) or 'nothing'}", file=sys.stderr)
    return registry


def load_registry(extra: Iterable[object] = (), load_entry_points: bool = True) -> Registry:
    return build_registry(make_manager(load_entry_points=load_entry_points, extra=extra))
