"""The suite that ``harness eval`` and :func:`harness.own_model.eval_model` write: the model's
table, the attack set, one temperature-rescaling defense per T and the grid (see
:mod:`harness.own_model` for how they are run)."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.registry import Registry, did_you_mean

DATASET = "mnist"  # the dataset harness eval and eval_model attack by default
SETS = ("standard", "fast")  # an attack joins a set by declaring a preset of that name
CONVERGENCE_IMAGES = 100  # the twice-the-iterations re-run of each attack, on at most this many images
EVAL_DIR = "runs"
SUITE_PREFIX = "eval-"  # the suite (and default run directory) is named eval-<model key>
NAME_LIMIT = 100        # characters of a suite name or key (harness.suite.load.SAFE_NAME)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(text: str, limit: int = NAME_LIMIT) -> str:
    """A suite key made of letters, digits, '_' and '-', at most ``limit`` characters."""
    return _UNSAFE.sub("-", text).strip("-_")[:limit].strip("-_") or "model"


def model_key(text: str) -> str:
    """:func:`safe_key` short enough that the suite name ``eval-KEY`` is a safe name too."""
    return safe_key(text, NAME_LIMIT - len(SUITE_PREFIX))


# -- the model -----------------------------------------------------------------------------------

def model_table(model: str, registry: Registry, weights: str | None = None,
                kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """(key, [models.KEY] table) for MODEL as ``harness eval`` takes it, from the loader a model plugin
    declares (``registry.models.loader()``): with the built-ins, a harness-saved ``NAME.safetensors``,
    a factory with ``weights``, or a TorchScript file."""
    from harness.errors import RegistryError

    try:
        spec = registry.models.loader()
    except RegistryError as exc:
        raise HarnessError(f"MODEL {model}: {exc}") from None
    name, options = spec.loader(model, weights, dict(kwargs or {}))
    return model_key(name), {"model": spec.name, **options}


# -- the suite -----------------------------------------------------------------------------------

def set_members(registry: Registry, name: str) -> dict[str, dict[str, Any]]:
    """[attacks] tables of the attacks whose records declare a preset ``name``, run with it; keyed
    by attack name (``name-backend`` where two backends declare the same attack)."""
    members = [e.obj for e in registry.attacks.entries() if name in e.obj.presets]
    counts: dict[str, int] = {}
    for spec in members:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    return {spec.name if counts[spec.name] == 1 else safe_key(f"{spec.name}-{spec.backend}"):
            {"attack": spec.name, "backend": spec.backend, "preset": name} for spec in members}


def attack_tables(attacks: str | Sequence[str], registry: Registry, num_classes: int) -> dict[str, dict]:
    """[attacks] tables: a set name (``standard``, ``fast``) or attack names (``name@backend``
    where several backends have it), comma-separated. A named attack runs with its ``standard``
    preset when it has one, else ``fast``'s, else the plugin's defaults."""
    names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
    if not names:
        raise HarnessError("--attacks: expected standard, fast or attack names separated by commas")
    tables: dict[str, dict] = {}
    for name in names:
        if name in SETS:
            members = set_members(registry, name)
            if not members:
                raise HarnessError(f"--attacks {name}: no registered attack declares a '{name}' preset; "
                                   f"is the plugin that provides them blocked (HARNESS_BLOCK_PLUGINS)?")
            tables.update(members)
            continue
        spec = _named_attack(registry, name)
        table = {"attack": spec.name, "backend": spec.backend}
        preset = next((s for s in SETS if s in spec.presets), None)
        tables[safe_key(name)] = {**table, "preset": preset} if preset else table
    for key, table in tables.items():  # attacks that pick target classes: the dataset's count
        option = registry.attacks.get(table["attack"], table["backend"]).classes_option
        if option:
            tables[key] = {**table, option: num_classes}
    return tables


def _named_attack(registry: Registry, name: str):
    """The attack ``name`` or ``name@backend`` of ``--attacks``; without a backend, the one backend
    that has it, else the one backend that puts it in a set."""
    attack, _, backend = name.partition("@")
    backends = sorted({e.obj.backend for e in registry.attacks.entries() if e.obj.name == attack})
    if not backends:
        choices = list(SETS) + [e.obj.name for e in registry.attacks.entries()]
        raise HarnessError(f"--attacks {name}: unknown attack or set{did_you_mean(attack, choices)}")
    if backend and backend not in backends:
        raise HarnessError(f"--attacks {name}: attack '{attack}' has no backend '{backend}'"
                           f"{did_you_mean(backend, backends)}")
    if not backend:
        declaring = sorted({e.obj.backend for e in registry.attacks.entries()
                            if e.obj.name == attack and any(s in e.obj.presets for s in SETS)})
        if len(backends) > 1 and len(declaring) != 1:
            raise HarnessError(f"--attacks {name}: several backends ({', '.join(backends)}); write "
                               f"{attack}@{backends[0]}")
        backend = declaring[0] if len(backends) > 1 else backends[0]
    return registry.attacks.get(attack, backend)


def logit_rescaler(registry: Registry):
    """The rescaler the T axis uses (``registry.defenses.logit_rescaler()``), its error as one ``--T`` line."""
    from harness.errors import RegistryError

    try:
        return registry.defenses.logit_rescaler()
    except RegistryError as exc:
        raise HarnessError(f"--T: {exc}") from None


def number_key(number: float) -> str:
    """A key for a positive number, one per value up to 15 significant digits: the shorter of its
    plain and its scientific form, the scientific one for round numbers of the same length ("10",
    "1e2", "1e5", "0p5", "0p01", "2p5e-7"), '.' written as 'p'."""
    plain = f"{number:.15g}"
    mantissa, _, exponent = f"{number:.14e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    shorter = len(plain) < len(scientific) or (len(plain) == len(scientific) and not plain.endswith("0"))
    text = plain if shorter and "e" not in plain else scientific
    return text.replace(".", "p")


def defense_tables(temperatures: str | float | Sequence[str | float], registry: Registry) -> dict[str, dict]:
    """One defense per T (a keyword of the rescaler's temperature option, e.g. ``auto``, or a
    positive number), keyed ``T<value>``: the registered rescaler that declares a
    ``temperature_option`` (:func:`logit_rescaler`). Two values giving the same T are an error."""
    spec = logit_rescaler(registry)
    option = spec.temperature_option
    words = tuple(spec.keywords.get(option, ()))
    expected = f"expected {''.join(f'{w} or ' for w in words)}a positive number"
    values = temperatures.split(",") if isinstance(temperatures, str) else \
        [temperatures] if isinstance(temperatures, (int, float)) else list(temperatures)
    tables: dict[str, dict] = {}
    for value in values:
        text = str(value).strip()
        if text in words:  # e.g. "auto": resolved on the clean images
            key, setting = "T" + safe_key(text), text
        else:
            try:
                number = float(text)
            except ValueError:
                raise HarnessError(f"--T {text}: {expected} (1 = logits as they are, 1e5 = divided by "
                                   f"1e5)") from None
            if not number > 0 or not math.isfinite(number):
                raise HarnessError(f"--T {text}: {expected}")
            key, setting = "T" + number_key(number), number
        if key in tables:
            raise HarnessError(f"--T {text}: T = {tables[key][option]} is already given; give each T once")
        tables[key] = {"defense": spec.name, option: setting}
    if not tables:
        raise HarnessError(f"--T: {expected}, or several separated by commas")
    return tables


def parse_eps(eps: str | float | Sequence[float]) -> list[float]:
    values = eps.split(",") if isinstance(eps, str) else [eps] if isinstance(eps, (int, float)) else list(eps)
    result = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HarnessError(f"--eps {value}: expected budgets separated by commas, e.g. 0.1,0.15") from None
        if not number >= 0:
            raise HarnessError(f"--eps {value}: expected a budget >= 0 (L-inf on [0, 1] pixels, e.g. 0.1)")
        result.append(number)
    if not result:
        raise HarnessError("--eps: expected at least one budget, e.g. 0.1")
    return result


def eval_suite(key: str, model: Mapping[str, Any], registry: Registry, dataset: str = DATASET,
               eps: str | float | Sequence[float] = (0.1,), attacks: str | Sequence[str] = "standard",
               n: int = 1000, temperatures: str | Sequence[str | float] = "auto",
               batch_size: int = 500) -> dict[str, Any]:
    """The suite, as parsed TOML, that evaluates one model. Every attack also runs at the large
    budget of its norm (harness.results.diagnostics.LARGE_EPS), what the large-eps masking check reads."""
    from harness.results.diagnostics import LARGE_EPS

    info = registry.datasets.get(dataset).info
    budgets = parse_eps(eps)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HarnessError(f"--n {n}: expected a positive number of test images")
    tables = attack_tables(attacks, registry, info.num_classes)
    defenses = defense_tables(temperatures, registry)
    grids = [{"model": [key], "defense": list(defenses), "attack": list(tables), "eps": budgets}]
    large: dict[float, list[str]] = {}
    for name, table in tables.items():
        budget = LARGE_EPS.get(registry.attacks.get(table["attack"], table["backend"]).norm)
        if budget is not None and budget not in budgets:
            large.setdefault(budget, []).append(name)
    for budget, names in sorted(large.items()):
        grids.append({"model": [key], "defense": list(defenses), "attack": names, "eps": [budget]})
    return {"suite": {"name": f"{SUITE_PREFIX}{key}", "description": f"harness eval of {key} on {dataset}"},
            "data": {"dataset": dataset, "test_size": n},
            "eval": {"batch_size": batch_size, "convergence_images": min(n, CONVERGENCE_IMAGES)},
            "models": {key: dict(model)}, "defenses": defenses, "attacks": tables, "grid": grids}
