"""Typed registries filled by the ``harness_register_*`` hooks, with "did you mean" lookups.

One :class:`Table` per kind of record: ``registry.datasets.get("mnist")``,
``registry.attacks.get("pgd", "torchattacks")``, ``registry.defenses.logit_rescaler()``,
``registry.models.loader()``. The six
kinds are listed once, in :data:`KINDS`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

from harness.api import Attack, Dataset, Defense, Executor, Learner, Model
from harness.errors import PluginError, RegistryError

R = TypeVar("R")


@dataclass(frozen=True)
class Kind:
    """A kind of record: its hook is ``harness_register_<plural>``, its table ``registry.<plural>``."""

    plural: str
    singular: str
    record: type

    @property
    def hook(self) -> str:
        return f"harness_register_{self.plural}"


KINDS = (Kind("datasets", "dataset", Dataset), Kind("learners", "learner", Learner), Kind("models", "model", Model),
         Kind("attacks", "attack", Attack), Kind("defenses", "defense", Defense),
         Kind("executors", "executor", Executor))


def did_you_mean(word: str, choices) -> str:
    """'; did you mean 'x'?' for the closest choice, or the list of choices when none is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; expected one of: {', '.join(choices) or '(none registered)'}"


@dataclass(frozen=True)
class Entry(Generic[R]):
    """One registered record and who registered it."""

    kind: str
    key: str
    obj: R
    plugin: str
    distribution: str | None


class Table(Generic[R]):
    """The records of one kind, by key (the name; ``name@backend`` for attacks)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[R]] = {}

    def key(self, obj: R) -> str:
        return obj.name  # type: ignore[attr-defined]

    def add(self, obj: Any, plugin: str, distribution: str | None = None) -> str:
        """Check and store ``obj`` for ``plugin``; returns its key. A second record under the same key
        is an error naming both plugins."""
        kind = self.kind
        if not isinstance(obj, kind.record):
            raise PluginError(f"plugin '{plugin}' handed {type(obj).__name__} to register in {kind.hook}; "
                              f"expected harness.api.{kind.record.__name__}")
        if not isinstance(obj.name, str) or not obj.name:
            raise PluginError(f"plugin '{plugin}' registered a {kind.singular} without a name")
        key = self.key(obj)
        if key in self._entries:
            raise PluginError(
                f"{kind.singular} '{key}' registered twice: by plugin '{self._entries[key].plugin}' and by "
                f"plugin '{plugin}'; rename one or block a plugin with HARNESS_BLOCK_PLUGINS")
        self._entries[key] = Entry(kind.plural, key, obj, plugin, distribution)
        return key

    def entries(self) -> Iterator[Entry[R]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.key))

    def __iter__(self) -> Iterator[R]:
        """The records, by key."""
        return (e.obj for e in self.entries())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, key: str) -> Entry[R]:
        if key in self._entries:
            return self._entries[key]
        raise RegistryError(f"unknown {self.kind.singular} '{key}'{did_you_mean(key, self._entries)}")

    def get(self, name: str) -> R:
        """The registered record, or a RegistryError with a suggestion."""
        return self.entry(name).obj


class Attacks(Table[Attack]):
    """Attacks are keyed ``name@backend``: several libraries may run the same attack."""

    def key(self, obj: Attack) -> str:
        return f"{obj.name}@{obj.backend}"

    def backends(self, name: str) -> list[str]:
        """The backends that register attack ``name``."""
        return sorted(a.backend for a in self if a.name == name)

    def get(self, name: str, backend: str | None = None) -> Attack:  # type: ignore[override]
        """Look an attack up by name and backend; the backend may be omitted when only one has it."""
        backends = self.backends(name)
        if not backends:
            raise RegistryError(f"unknown attack '{name}'{did_you_mean(name, {a.name for a in self})}")
        if backend is None:
            if len(backends) > 1:
                raise RegistryError(f"attack '{name}' is provided by backends {', '.join(backends)}; "
                                    f"set backend = \"{backends[0]}\" (or another) next to it")
            backend = backends[0]
        if backend not in backends:
            raise RegistryError(f"attack '{name}' has no backend '{backend}'{did_you_mean(backend, backends)}")
        return self._entries[f"{name}@{backend}"].obj


class Models(Table[Model]):
    def loader(self) -> Model:
        """The first registered model (by name) that declares a ``loader`` for models named on the
        command line (``harness eval MODEL``); a RegistryError when none does."""
        for model in self:
            if model.loader is not None:
                return model
        raise RegistryError("no registered model plugin loads a model named on the command line (a Model with a "
                            "loader); is the plugin that provides one blocked (HARNESS_BLOCK_PLUGINS) or left out "
                            "(HARNESS_LOAD_PLUGINS)?")


class Defenses(Table[Defense]):
    def logit_rescaler(self) -> Defense:
        """The first registered defense (by name) that is a rescaler reporting a logit temperature
        (``rescaler`` and ``temperature_option``), e.g. to evaluate a model at several T; a
        RegistryError when none is registered."""
        for defense in self:
            if defense.rescaler and defense.temperature_option:
                return defense
        raise RegistryError("no registered defense rescales the logits (a rescaler with a temperature_option); "
                            "is the plugin that provides one blocked (HARNESS_BLOCK_PLUGINS) or left out "
                            "(HARNESS_LOAD_PLUGINS)?")


class Registry:
    """Every registered record: one typed table per kind (``registry.attacks``, ...)."""

    datasets: Table[Dataset]
    learners: Table[Learner]
    models: Models
    attacks: Attacks
    defenses: Defenses
    executors: Table[Executor]

    def __init__(self) -> None:
        special = {"models": Models, "attacks": Attacks, "defenses": Defenses}
        for kind in KINDS:
            setattr(self, kind.plural, special.get(kind.plural, Table)(kind))

    def __getitem__(self, kind: str) -> Table:
        """The table of a kind named by its plural (``registry["models"]``), for code that holds the
        kind as data, such as a suite's section names."""
        if kind not in {k.plural for k in KINDS}:
            raise KeyError(kind)
        return getattr(self, kind)

    def tables(self) -> Iterator[Table]:
        return (getattr(self, kind.plural) for kind in KINDS)

    # Shorthands over the tables for code that names the kind as a string (scripts under bench/).
    def get(self, kind: str, name: str) -> Any:
        return self[kind].get(name)

    def entries(self, kind: str) -> Iterator[Entry]:
        return self[kind].entries()

    def names(self, kind: str) -> list[str]:
        return self[kind].names()
