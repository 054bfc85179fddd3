"""Suite files: TOML -> validated :class:`Suite` -> grid cells.

A suite is data, never code. Every error names the file, the key and what was expected, as one line.
The layout is documented in docs/suites.md.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessError, SuiteError
from harness.registry import Registry, did_you_mean

AXES = ("dataset", "model", "defense", "attack", "eps", "seed")
SECTIONS = ("suite", "data", "eval", "models", "defenses", "attacks", "grid")
NO_DEFENSE = "none"  # grid value meaning "attack the bare model"


@dataclass(frozen=True)
class Component:
    """A named model, defense or attack entry of a suite, with options merged over the defaults."""

    key: str
    plugin: str
    options: dict[str, Any]
    backend: str | None = None
    stages: tuple["Stage", ...] = ()


@dataclass(frozen=True)
class Stage:
    learner: str
    params: tuple[str, ...]
    freeze: bool
    options: dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """One point of the grid; it becomes one results row."""

    dataset: str
    model: str
    defense: str
    attack: str
    eps: float
    seed: int


@dataclass
class Suite:
    path: Path
    name: str
    description: str
    datasets: dict[str, str]          # dataset name -> its content fingerprint
    train_size: int | None
    test_size: int | None
    batch_size: int
    convergence_images: int
    models: dict[str, Component]
    defenses: dict[str, Component]
    attacks: dict[str, Component]
    cells: list[Cell] = field(default_factory=list)

    def model_config(self, dataset: str, key: str, seed: int) -> dict[str, Any]:
        """Everything that determines a trained model: its hash names the saved file."""
        model = self.models[key]
        return {"dataset": dataset, "fingerprint": self.datasets[dataset],
                "train_size": self.train_size, "model": model.plugin, "options": model.options,
                "stages": [asdict(s) for s in model.stages], "seed": seed}

    def cell_config(self, cell: Cell) -> dict[str, Any]:
        defense = self.defenses.get(cell.defense)
        attack = self.attacks[cell.attack]
        return {"model": self.model_config(cell.dataset, cell.model, cell.seed), "test_size": self.test_size,
                "defense": None if defense is None else [defense.plugin, defense.options],
                "attack": [attack.plugin, attack.backend, attack.options], "eps": cell.eps}


def config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _Checker:
    """Reads one suite file; every failure raises SuiteError naming file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> SuiteError:
        text = f"{self.path}: {key}: {message}"  # keys and values may hold line breaks: escape them
        return SuiteError("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text))

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_describe(value)}")
        return value

    def known_keys(self, table: Mapping[str, Any], allowed, key: str) -> None:
        for name in table:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else name,
                                f"unknown key '{name}'{did_you_mean(name, allowed)}")

    def string(self, table: Mapping[str, Any], name: str, key: str, default: Any = ...) -> Any:
        if name not in table:
            if default is ...:
                near = difflib.get_close_matches(name, [str(k) for k in table], n=1, cutoff=0.6)
                hint = f" (found '{near[0]}'; did you mean '{name}'?)" if near else ""
                raise self.fail(f"{key}.{name}", f"missing; expected a string{hint}")
            return default
        value = table[name]
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key}.{name}", f"expected a non-empty string, got {_describe(value)}")
        return value

    def positive_int(self, table: Mapping[str, Any], name: str, key: str, default: Any) -> Any:
        value = table.get(name, default)
        if value is default:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(f"{key}.{name}", f"expected a positive integer, got {_describe(value)}")
        return value

    def options(self, table: Mapping[str, Any], spec: Any, reserved, key: str, what: str) -> dict[str, Any]:
        """Plugin options: the defaults, then the named preset's, then the suite's own keys; every
        key must be one of the plugin's defaults, of the same type."""
        defaults = spec.defaults
        options = dict(defaults)
        reserved = tuple(reserved) + ("preset",)
        if "preset" in table:
            preset = table["preset"]
            if not isinstance(preset, str) or preset not in spec.presets:
                raise self.fail(f"{key}.preset", f"unknown preset {preset!r} for {what}"
                                f"{did_you_mean(str(preset), spec.presets)}")
            options.update(spec.presets[preset])
        for name, value in table.items():
            if name in reserved:
                continue
            if name not in defaults:
                hint = did_you_mean(name, list(defaults) + list(reserved))
                raise self.fail(f"{key}.{name}", f"unknown parameter '{name}' for {what}{hint}")
            keywords = getattr(spec, "keywords", {}).get(name, ())
            if value in keywords:
                options[name] = value
                continue
            try:
                options[name] = self.typed(value, defaults[name], f"{key}.{name}")
            except SuiteError as exc:
                if not keywords:
                    raise
                words = " or ".join(f'"{w}"' for w in keywords)
                raise SuiteError(str(exc).replace(", got", f" or {words}, got", 1)) from None
        return options

    def plugin_check(self, spec: Any, options: dict[str, Any], key: str) -> None:
        """Run the plugin's own ``check``; its ValueError("name: expectation") names the key."""
        if spec.check is None:
            return
        try:
            spec.check(dict(options))
        except ValueError as exc:
            name, _, message = str(exc).partition(": ")
            raise self.fail(f"{key}.{name}" if message else key, message or str(exc)) from None

    def typed(self, value: Any, default: Any, key: str) -> Any:
        try:
            return coerce_option(value, default)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None


def coerce_option(value: Any, default: Any) -> Any:
    """``value`` converted to the type of an option's ``default`` (ints are accepted for floats);
    ValueError("expected ..., got ...") when it does not fit. ``None`` defaults accept anything."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        if ok:
            try:
                value = float(value)
            except OverflowError:  # TOML integers are unbounded
                ok = False
            else:
                ok = math.isfinite(value)
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, expected = isinstance(value, list), "a list"
    else:
        ok, expected = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise ValueError(f"expected {expected}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (dict, list)) else kind


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found; check the path (suites live under suites/)") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read suite file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SuiteError(f"{path}: not a UTF-8 text file; a suite is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from None


def load_suite(path: str | Path, registry: Registry) -> Suite:
    """Read, validate and expand a suite file against the registered plugins."""
    path = Path(path)
    raw = read_toml(path)
    check = _Checker(path)
    check.known_keys(raw, SECTIONS, "")
    meta = check.table(raw.get("suite", {}), "suite")
    check.known_keys(meta, ("name", "description"), "suite")
    if "data" not in raw:
        raise check.fail("data", "missing; declare [data] with dataset = \"NAME\" (see `harness plugins`)")
    data = check.table(raw["data"], "data")
    check.known_keys(data, ("dataset", "train_size", "test_size"), "data")
    datasets = _datasets(check, registry, data)
    evaluation = check.table(raw.get("eval", {}), "eval")
    check.known_keys(evaluation, ("batch_size", "convergence_images"), "eval")
    convergence = evaluation.get("convergence_images", 200)
    if isinstance(convergence, bool) or not isinstance(convergence, int) or convergence < 0:
        raise check.fail("eval.convergence_images", f"expected an integer >= 0 (0 turns the check off), "
                         f"got {_describe(convergence)}")

    suite = Suite(
        path=path,
        name=check.string(meta, "name", "suite", default=path.stem),
        description=check.string(meta, "description", "suite", default=""),
        datasets=datasets,
        train_size=check.positive_int(data, "train_size", "data", None),
        test_size=check.positive_int(data, "test_size", "data", None),
        batch_size=check.positive_int(evaluation, "batch_size", "eval", 500),
        convergence_images=convergence,
        models=_models(check, registry, raw),
        defenses=_components(check, registry, raw, "defenses", "defense"),
        attacks=_components(check, registry, raw, "attacks", "attack"),
    )
    if NO_DEFENSE in suite.defenses:
        raise check.fail(f"defenses.{NO_DEFENSE}", f"'{NO_DEFENSE}' is reserved for the bare model; rename it")
    suite.cells = expand_grid(check, raw.get("grid"), suite)
    return suite


def _datasets(check: _Checker, registry: Registry, data: Mapping[str, Any]) -> dict[str, str]:
    """``dataset = "mnist"`` or ``dataset = ["mnist", "fashion-mnist"]``: name -> fingerprint."""
    value = data.get("dataset")
    names = value if isinstance(value, list) else [check.string(data, "dataset", "data")]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise check.fail("data.dataset", "expected a dataset name or a non-empty list of names")
    return {name: _lookup(check, registry, "datasets", name, "data.dataset").fingerprint for name in names}


def _lookup(check: _Checker, registry: Registry, kind: str, name: str, key: str) -> Any:
    try:
        return registry.get(kind, name)
    except HarnessError as exc:
        raise check.fail(key, str(exc)) from None


def _models(check: _Checker, registry: Registry, raw: Mapping[str, Any]) -> dict[str, Component]:
    models = check.table(raw.get("models"), "models") if "models" in raw else None
    if not models:
        raise check.fail("models", "missing; declare at least one [models.NAME] table")
    result = {}
    for key, entry in models.items():
        where = f"models.{key}"
        entry = check.table(entry, where)
        spec = _lookup(check, registry, "models", check.string(entry, "model", where), f"{where}.model")
        options = check.options(entry, spec, ("model", "stages"), where, f"model '{spec.name}'")
        check.plugin_check(spec, options, where)
        stages = entry.get("stages")
        if not isinstance(stages, list) or not stages:
            raise check.fail(f"{where}.stages", "expected a non-empty list of stages "
                             "([[models.NAME.stages]] tables with a 'learner' key)")
        result[key] = Component(key, spec.name, options,
                                stages=tuple(_stage(check, registry, s, f"{where}.stages.{i}")
                                             for i, s in enumerate(stages)))
    return result


def _stage(check: _Checker, registry: Registry, entry: Any, where: str) -> Stage:
    entry = check.table(entry, where)
    spec = _lookup(check, registry, "learners", check.string(entry, "learner", where), f"{where}.learner")
    params = entry.get("params", ["*"])
    if not isinstance(params, list) or not params or not all(isinstance(p, str) and p for p in params):
        raise check.fail(f"{where}.params", "expected a list of parameter names or patterns, "
                         "e.g. [\"fc1.weight\"] or [\"*\"]")
    freeze = entry.get("freeze", False)
    if not isinstance(freeze, bool):
        raise check.fail(f"{where}.freeze", f"expected true or false, got {_describe(freeze)}")
    options = check.options(entry, spec, ("learner", "params", "freeze"), where,
                            f"learner '{spec.name}'")
    check.plugin_check(spec, options, where)
    return Stage(spec.name, tuple(params), freeze, options)


def _components(check: _Checker, registry: Registry, raw: Mapping[str, Any], section: str,
                field_name: str) -> dict[str, Component]:
    tables = check.table(raw.get(section, {}), section)
    result = {}
    for key, entry in tables.items():
        where = f"{section}.{key}"
        entry = check.table(entry, where)
        name = check.string(entry, field_name, where)
        reserved: tuple[str, ...] = (field_name,)
        backend = None
        if section == "attacks":
            reserved = (field_name, "backend")
            backend = check.string(entry, "backend", where, default=None)
            try:
                spec = registry.attack(name, backend)
            except HarnessError as exc:
                bad_backend = backend is not None and name in {e.obj.name for e in registry.entries("attacks")}
                raise check.fail(f"{where}.backend" if bad_backend else f"{where}.{field_name}", str(exc)) from None
            backend = spec.backend
        else:
            spec = _lookup(check, registry, section, name, f"{where}.{field_name}")
        options = check.options(entry, spec, reserved, where, f"{field_name} '{spec.name}'")
        check.plugin_check(spec, options, where)
        result[key] = Component(key, spec.name, options, backend=backend)
    return result


def expand_grid(check: _Checker, grid: Any, suite: Suite) -> list[Cell]:
    """The union of the products of each [grid] (or [[grid]]) table, minus its exclusions."""
    if grid is None:
        raise check.fail("grid", "missing; declare [grid] with model, attack and eps lists")
    grids = grid if isinstance(grid, list) else [grid]
    if not grids:
        raise check.fail("grid", "empty; expected [grid] or at least one [[grid]] table")
    cells: dict[Cell, None] = {}
    for index, table in enumerate(grids):
        where = "grid" if not isinstance(grid, list) else f"grid.{index}"
        table = check.table(table, where)
        check.known_keys(table, AXES + ("exclude",), where)
        axes = {axis: _axis(check, table, axis, where, suite) for axis in AXES}
        excludes = _excludes(check, table.get("exclude", []), axes, where, suite)
        for values in itertools.product(*(axes[axis] for axis in AXES)):
            cell = Cell(*values)
            if not any(all(getattr(cell, axis) in allowed for axis, allowed in rule.items())
                       for rule in excludes):
                cells[cell] = None
    if not cells:
        raise check.fail("grid", "the exclusions remove every cell; nothing would run")
    return list(cells)


def _axis(check: _Checker, table: Mapping[str, Any], axis: str, where: str, suite: Suite) -> list:
    key = f"{where}.{axis}"
    defaults = {"dataset": list(suite.datasets), "defense": [NO_DEFENSE], "seed": [0]}
    values = table.get(axis, defaults.get(axis))
    if values is None:
        raise check.fail(key, f"missing; expected a list of {axis} values")
    if not isinstance(values, list) or not values:
        raise check.fail(key, f"expected a non-empty list, got {_describe(values)}")
    return [_axis_value(check, axis, value, key, suite) for value in values]


def _axis_value(check: _Checker, axis: str, value: Any, key: str, suite: Suite) -> Any:
    if axis == "eps":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise check.fail(key, f"epsilon must be a number in [0, 1] (images are scaled to [0, 1]), "
                             f"got {_describe(value)}")
        return float(value)
    if axis == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise check.fail(key, f"seeds must be non-negative integers, got {_describe(value)}")
        return value
    declared = {"dataset": suite.datasets, "model": suite.models,
                "defense": {NO_DEFENSE: None, **suite.defenses}, "attack": suite.attacks}[axis]
    if not isinstance(value, str):
        raise check.fail(key, f"expected the name of a declared {axis} (a string), got {_describe(value)}")
    if value not in declared:
        section = {"defense": "defenses", "dataset": "data] dataset = [..."}.get(axis, axis + "s")
        raise check.fail(key, f"'{value}' is not declared under [{section}]{did_you_mean(str(value), declared)}")
    return value


def _excludes(check: _Checker, rules: Any, axes: Mapping[str, list], where: str, suite: Suite) -> list[dict]:
    if not isinstance(rules, list):
        raise check.fail(f"{where}.exclude", "expected a list of tables like { model = \"bp\", eps = 0.3 }")
    result = []
    for index, rule in enumerate(rules):
        key = f"{where}.exclude.{index}"
        rule = check.table(rule, key)
        check.known_keys(rule, AXES, key)
        parsed = {}
        for axis, value in rule.items():
            values = [_axis_value(check, axis, v, f"{key}.{axis}", suite)
                      for v in (value if isinstance(value, list) else [value])]
            missing = [v for v in values if v not in axes[axis]]
            if missing:
                raise check.fail(f"{key}.{axis}", f"{missing[0]!r} is not on the {axis} axis "
                                 f"{axes[axis]}; the rule would match nothing")
            parsed[axis] = values
        result.append(parsed)
    return result
