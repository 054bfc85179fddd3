"""A suite's [grid]: the union of the products of its tables' axes, minus their ``exclude`` rules,
as :class:`harness.suite.validate.Cell` values; every value is checked against what the suite
declares, and every eps against the threat model of the cell's attack:

* L∞ (``norm = "linf"``): eps in [0, 1], since images are scaled to [0, 1] (1 allows any image);
* L2 (``norm = "l2"``): eps in [0, sqrt(d)] for images of d values (the largest L2 distance between
  two images in [0, 1]^d: 28 for MNIST's 784 pixels); L1: [0, d].
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Mapping

from harness.registry import Registry, did_you_mean
from harness.suite.resolve import describe as _describe
from harness.suite.validate import AXES, NO_DEFENSE, Cell, SuiteChecker

if TYPE_CHECKING:  # pragma: no cover
    from harness.suite.load import Suite


def eps_limit(norm: str, input_shape) -> float:
    """The largest meaningful eps of a threat model for images of ``input_shape`` in [0, 1]: the
    norm's diameter of [0, 1]^d (no limit for a norm it does not know)."""
    size = math.prod(input_shape)
    return {"linf": 1.0, "l2": math.sqrt(size), "l1": float(size)}.get(norm, math.inf)


def _check_budget(check: SuiteChecker, cell: Cell, key: str, suite: Suite, registry: Registry) -> None:
    component = suite.attacks[cell.attack]
    spec = registry.attacks.get(component.plugin, component.backend)
    info = registry.datasets.get(cell.dataset).info
    limit = eps_limit(spec.norm, info.input_shape)
    if cell.eps > limit:
        unit = "L∞" if spec.norm == "linf" else spec.norm.upper()
        raise check.fail(key, f"eps {cell.eps:g} is above the {unit} limit {limit:g} of attack '{cell.attack}' on "
                              f"{cell.dataset} (images in [0, 1]"
                              + ("; an L∞ budget is at most 1)" if spec.norm == "linf" else ")"))


def expand_grid(check: SuiteChecker, grid: Any, suite: Suite, registry: Registry) -> list[Cell]:
    """The union of the products of each [grid] (or [[grid]]) table, minus its exclusions; each
    cell's eps checked against its attack's norm and its dataset's image size."""
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
                _check_budget(check, cell, f"{where}.eps", suite, registry)
                cells[cell] = None
    if not cells:
        raise check.fail("grid", "the exclusions remove every cell; nothing would run")
    return list(cells)


def _axis(check: SuiteChecker, table: Mapping[str, Any], axis: str, where: str, suite: Suite) -> list:
    key = f"{where}.{axis}"
    defaults = {"dataset": list(suite.datasets), "defense": [NO_DEFENSE], "seed": [0]}
    values = table.get(axis, defaults.get(axis))
    if values is None:
        raise check.fail(key, f"missing; expected a list of {axis} values")
    if not isinstance(values, list) or not values:
        raise check.fail(key, f"expected a non-empty list, got {_describe(values)}")
    return [_axis_value(check, axis, value, key, suite) for value in values]


def _axis_value(check: SuiteChecker, axis: str, value: Any, key: str, suite: Suite) -> Any:
    if axis == "eps":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise check.fail(key, f"epsilon must be a number >= 0 (a budget in the attack's norm, images in [0, 1]), "
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


def _excludes(check: SuiteChecker, rules: Any, axes: Mapping[str, list], where: str, suite: Suite) -> list[dict]:
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
