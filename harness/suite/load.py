"""Suite files: TOML -> validated :class:`Suite` -> grid cells.

A suite is data, never code. Every error names the file, the key and what was expected, as one line.
The layout is documented in docs/suites.md.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError, SuiteError
from harness.registry import Registry, did_you_mean
from harness.suite import sample
from harness.suite.grid import expand_grid
from harness.suite.resolve import describe as _describe
from harness.suite.validate import NO_DEFENSE, SAFE_NAME, Cell, SuiteChecker

# Cell, NO_DEFENSE and SAFE_NAME live in harness.suite.validate (shared with harness.suite.grid) and stay importable from here
__all__ = ["NO_DEFENSE", "SAFE_NAME", "Cell", "Component", "Stage", "Suite", "config_hash", "load_suite", "read_toml",
           "suite_from_data"]

SECTIONS = ("suite", "data", "eval", "models", "defenses", "attacks", "grid")


@dataclass(frozen=True)
class Component:
    """A named model, defense or attack entry of a suite, with options merged over the defaults."""

    key: str
    plugin: str
    options: dict[str, Any]
    backend: str | None = None
    stages: tuple["Stage", ...] = ()
    fingerprint: str = ""  # a pretrained model's content identity (Model.fingerprint); "" for others
    transfer: bool = False  # an attack made on another model of the suite (harness.api.Attack.transfer)


@dataclass(frozen=True)
class Stage:
    learner: str
    params: tuple[str, ...]
    freeze: bool
    options: dict[str, Any]


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
    overrides: tuple[str, ...] = ()   # --set KEY=VALUE pairs applied to the file (harness/suite/overrides.py)
    source: str | None = None         # the effective suite as TOML when it is not the file's text
    test_subset: sample.Sample | None = None  # a seeded random sample of the test split (harness/suite/sample.py)

    def model_config(self, dataset: str, key: str, seed: int) -> dict[str, Any]:
        """Everything that determines a trained model: its hash names the saved file."""
        model = self.models[key]
        config = {"dataset": dataset, "fingerprint": self.datasets[dataset],
                  "train_size": self.train_size, "model": model.plugin, "options": model.options,
                  "stages": [asdict(s) for s in model.stages], "seed": seed}
        if model.fingerprint:  # only then: the hashes of every other model stay what they were
            config["content"] = model.fingerprint
        return config

    def test_images(self, x, y, dataset: str):
        """The test images (and labels) the cells are evaluated on: the first ``test_size`` of the split,
        then the ``test_subset`` sample of them when one is set."""
        x, y = x[: self.test_size], y[: self.test_size]
        if self.test_subset is None:
            return x, y
        try:
            chosen = self.test_subset.indices(y)
        except ValueError as exc:
            raise SuiteError(f"{self.path}: data.test_subset.n: {exc} ({dataset})") from None
        return x[chosen], y[chosen]

    def cell_config(self, cell: Cell) -> dict[str, Any]:
        defense = self.defenses.get(cell.defense)
        attack = self.attacks[cell.attack]
        config = {"model": self.model_config(cell.dataset, cell.model, cell.seed), "test_size": self.test_size,
                  "defense": None if defense is None else [defense.plugin, defense.options],
                  "attack": [attack.plugin, attack.backend, attack.options], "eps": cell.eps}
        if self.test_subset is not None:  # only then: every other cell keeps its hash
            config["test_subset"] = self.test_subset.config()
        if attack.transfer:  # only then, too: what the examples are made on is part of the cell
            source_defense = self.defenses.get(attack.options["source_defense"])
            via = self.attacks[attack.options["via"]]
            config["source"] = {"model": self.model_config(cell.dataset, attack.options["source"], cell.seed),
                                "defense": None if source_defense is None else [source_defense.plugin,
                                                                                source_defense.options],
                                "via": [via.plugin, via.backend, via.options]}
        return config


def config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


def load_suite(path: str | Path, registry: Registry, overrides: Sequence[str] = ()) -> Suite:
    """Read, validate and expand a suite file against the registered plugins, after applying the
    ``--set KEY=VALUE`` ``overrides`` (harness/suite/overrides.py) to it."""
    path = Path(path)
    raw = read_toml(path)
    if not overrides:
        return suite_from_data(raw, path, registry)
    from harness.suite import overrides as override

    raw = override.apply(raw, overrides, path)
    try:
        suite = suite_from_data(raw, path, registry)
    except SuiteError as exc:
        raise override.blame(exc, path, overrides) from None
    suite.overrides, suite.source = tuple(overrides), override.effective_text(raw, path, overrides)
    return suite


def suite_from_data(raw: dict[str, Any], path: Path, registry: Registry) -> Suite:
    """Validate and expand a parsed suite; ``path`` names it in errors (``harness eval`` builds one
    in memory)."""
    check = SuiteChecker(path)
    check.known_keys(raw, SECTIONS, "")
    meta = check.table(raw.get("suite", {}), "suite")
    check.known_keys(meta, ("name", "description"), "suite")
    if "data" not in raw:
        raise check.fail("data", "missing; declare [data] with dataset = \"NAME\" (see `harness plugins`)")
    data = check.table(raw["data"], "data")
    check.known_keys(data, ("dataset", "train_size", "test_size", "test_subset"), "data")
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
        test_subset=sample.parse(check, data),
    )
    check.safe_name(suite.name, "suite.name", "suite name",
                    "" if "name" in meta else f" (from the file name '{path.name}'; set [suite] name)")
    if NO_DEFENSE in suite.defenses:
        raise check.fail(f"defenses.{NO_DEFENSE}", f"'{NO_DEFENSE}' is reserved for the bare model; rename it")
    _check_transfers(check, suite, registry)
    suite.cells = expand_grid(check, raw.get("grid"), suite, registry)
    return suite


def _datasets(check: SuiteChecker, registry: Registry, data: Mapping[str, Any]) -> dict[str, str]:
    """``dataset = "mnist"`` or ``dataset = ["mnist", "fashion-mnist"]``: name -> fingerprint."""
    value = data.get("dataset")
    names = value if isinstance(value, list) else [check.string(data, "dataset", "data")]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise check.fail("data.dataset", "expected a dataset name or a non-empty list of names")
    return {name: _lookup(check, registry, "datasets", name, "data.dataset").fingerprint for name in names}


def _lookup(check: SuiteChecker, registry: Registry, kind: str, name: str, key: str) -> Any:
    try:
        return registry[kind].get(name)
    except HarnessError as exc:
        raise check.fail(key, str(exc)) from None


def _models(check: SuiteChecker, registry: Registry, raw: Mapping[str, Any]) -> dict[str, Component]:
    models = check.table(raw.get("models"), "models") if "models" in raw else None
    if not models:
        raise check.fail("models", "missing; declare at least one [models.NAME] table")
    result = {}
    for key, entry in models.items():
        where = f"models.{key}"
        check.safe_name(key, where, "model key")
        entry = check.table(entry, where)
        spec = _lookup(check, registry, "models", check.string(entry, "model", where), f"{where}.model")
        options = check.options(entry, spec, ("model", "stages"), where, f"model '{spec.name}'")
        check.plugin_check(spec, options, where)
        stages = entry.get("stages", [] if spec.pretrained else None)
        if not isinstance(stages, list) or (not stages and not spec.pretrained):
            raise check.fail(f"{where}.stages", "expected a non-empty list of stages "
                             "([[models.NAME.stages]] tables with a 'learner' key)")
        fingerprint = ""
        if spec.fingerprint is not None:
            try:
                fingerprint = spec.fingerprint(dict(options))
            except ValueError as exc:
                name, _, message = str(exc).partition(": ")
                raise check.fail(f"{where}.{name}" if message else where, message or str(exc)) from None
        result[key] = Component(key, spec.name, options, fingerprint=fingerprint,
                                stages=tuple(_stage(check, registry, s, f"{where}.stages.{i}")
                                             for i, s in enumerate(stages)))
    return result


def _stage(check: SuiteChecker, registry: Registry, entry: Any, where: str) -> Stage:
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


def _components(check: SuiteChecker, registry: Registry, raw: Mapping[str, Any], section: str,
                field_name: str) -> dict[str, Component]:
    tables = check.table(raw.get(section, {}), section)
    result = {}
    for key, entry in tables.items():
        where = f"{section}.{key}"
        check.safe_name(key, where, f"{field_name} key")
        entry = check.table(entry, where)
        name = check.string(entry, field_name, where)
        reserved: tuple[str, ...] = (field_name,)
        backend = None
        if section == "attacks":
            reserved = (field_name, "backend")
            backend = check.string(entry, "backend", where, default=None)
            try:
                spec = registry.attacks.get(name, backend)
            except HarnessError as exc:
                bad_backend = backend is not None and bool(registry.attacks.backends(name))
                raise check.fail(f"{where}.backend" if bad_backend else f"{where}.{field_name}", str(exc)) from None
            backend = spec.backend
        else:
            spec = _lookup(check, registry, section, name, f"{where}.{field_name}")
        options = check.options(entry, spec, reserved, where, f"{field_name} '{spec.name}'")
        check.plugin_check(spec, options, where)
        result[key] = Component(key, spec.name, options, backend=backend, transfer=getattr(spec, "transfer", False))
    return result


def _check_transfers(check: SuiteChecker, suite: "Suite", registry: Registry) -> None:
    """Each transfer attack names a model, a defense (or "none") and a non-transfer attack of the suite."""
    for key, attack in suite.attacks.items():
        if not attack.transfer:
            continue
        where = f"attacks.{key}"
        for option, known, what in (("source", suite.models, "model"),
                                    ("source_defense", [NO_DEFENSE, *suite.defenses], "defense"),
                                    ("via", suite.attacks, "attack")):
            value = attack.options[option]
            if value not in known:
                raise check.fail(f"{where}.{option}", f"expected a {what} key of this suite "
                                 f"({', '.join(known)}), got {value!r}{did_you_mean(str(value), list(known))}")
        via = suite.attacks[attack.options["via"]]
        spec = registry.attacks.get(attack.plugin, attack.backend)
        via_spec = registry.attacks.get(via.plugin, via.backend)
        if via.transfer or via_spec.minimal or via_spec.norm != spec.norm:
            raise check.fail(f"{where}.via", f"expected an eps-bounded {spec.norm} attack run on the source (not a "
                             f"transfer or minimum-norm attack: the examples are scored in the {spec.norm} ball), "
                             f"got '{attack.options['via']}'")
