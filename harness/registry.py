"""Typed registries filled by the ``harness_register_*`` hooks, with "did you mean" lookups."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterator

from harness.api import KINDS, Attack
from harness.errors import PluginError, RegistryError

SINGULAR = {"datasets": "dataset", "learners": "learner", "models": "model", "attacks": "attack",
            "defenses": "defense", "executors": "executor"}


def did_you_mean(word: str, choices) -> str:
    """'; did you mean 'x'?' for the closest choice, or the list of choices when none is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; expected one of: {', '.join(choices) or '(none registered)'}"


@dataclass(frozen=True)
class Entry:
    """One registered object and who registered it."""

    kind: str
    key: str
    obj: Any
    plugin: str
    distribution: str | None


class Registry:
    """All registered objects, one table per kind. Attacks are keyed ``name@backend``."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def register(self, kind: str, obj: Any, plugin: str, distribution: str | None = None) -> None:
        expected = KINDS[kind]
        if not isinstance(obj, expected):
            raise PluginError(
                f"plugin '{plugin}' handed {type(obj).__name__} to register in harness_register_{kind}; "
                f"expected harness.api.{expected.__name__}")
        if not isinstance(obj.name, str) or not obj.name:
            raise PluginError(f"plugin '{plugin}' registered a {SINGULAR[kind]} without a name")
        key = f"{obj.name}@{obj.backend}" if isinstance(obj, Attack) else obj.name
        table = self._tables[kind]
        if key in table:
            raise PluginError(
                f"{SINGULAR[kind]} '{key}' registered twice: by plugin '{table[key].plugin}' and by "
                f"plugin '{plugin}'; rename one or block a plugin with HARNESS_BLOCK_PLUGINS")
        table[key] = Entry(kind, key, obj, plugin, distribution)

    def entries(self, kind: str) -> Iterator[Entry]:
        return iter(sorted(self._tables[kind].values(), key=lambda e: e.key))

    def names(self, kind: str) -> list[str]:
        return sorted(self._tables[kind])

    def get(self, kind: str, name: str) -> Any:
        """The registered object, or a RegistryError with a suggestion."""
        table = self._tables[kind]
        if name in table:
            return table[name].obj
        raise RegistryError(f"unknown {SINGULAR[kind]} '{name}'{did_you_mean(name, table)}")

    def logit_rescaler(self) -> Any:
        """The first registered defense (by name) that is a rescaler reporting a logit temperature
        (``rescaler`` and ``temperature_option``), e.g. to evaluate a model at several T; a
        RegistryError when none is registered."""
        for entry in self.entries("defenses"):
            if entry.obj.rescaler and entry.obj.temperature_option:
                return entry.obj
        raise RegistryError("no registered defense rescales the logits (a rescaler with a temperature_option); "
                            "is the plugin that provides one blocked (HARNESS_BLOCK_PLUGINS) or left out "
                            "(HARNESS_LOAD_PLUGINS)?")

    def attack(self, name: str, backend: str | None) -> Attack:
        """Look an attack up by name and backend; the backend may be omitted when only one has it."""
        table = self._tables["attacks"]
        backends = sorted(e.obj.backend for e in table.values() if e.obj.name == name)
        if not backends:
            names = {e.obj.name for e in table.values()}
            raise RegistryError(f"unknown attack '{name}'{did_you_mean(name, names)}")
        if backend is None:
            if len(backends) > 1:
                raise RegistryError(f"attack '{name}' is provided by backends {', '.join(backends)}; "
                                    f"set backend = \"{backends[0]}\" (or another) next to it")
            backend = backends[0]
        if backend not in backends:
            raise RegistryError(f"attack '{name}' has no backend '{backend}'{did_you_mean(backend, backends)}")
        return table[f"{name}@{backend}"].obj
