"""What a suite file's loader (:mod:`harness.suite.load`) and its grid (:mod:`harness.suite.grid`) share: the
grid's axes and :class:`Cell`, and :class:`SuiteChecker`, which reads one suite file and turns every
failure into one line naming the file and the key."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import SuiteError
from harness.registry import did_you_mean
from harness.suite.resolve import OptionError, check_options, coerce_option, resolve_options
from harness.suite.resolve import describe as _describe

AXES = ("dataset", "model", "defense", "attack", "eps", "seed")
NO_DEFENSE = "none"  # grid value meaning "attack the bare model"
# Suite names and model, defense and attack keys become file and directory names (runs/NAME,
# models/KEY-seed0-HASH.safetensors): a suite from elsewhere must not be able to name a path.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SAFE_HINT = "use up to 100 letters, digits, '.', '_' and '-', starting with a letter or digit"


@dataclass(frozen=True)
class Cell:
    """One point of the grid; it becomes one results row."""

    dataset: str
    model: str
    defense: str
    attack: str
    eps: float
    seed: int


class SuiteChecker:
    """Reads one suite file; every failure raises SuiteError naming file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> SuiteError:
        text = f"{self.path}: {key}: {message}"  # keys and values may hold line breaks: escape them
        return SuiteError("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text))

    def safe_name(self, name: Any, key: str, what: str, note: str = "") -> None:
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            raise self.fail(key, f"unsafe {what} {name!r}{note}: it becomes a file name; {SAFE_HINT}")

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
        """Plugin options (harness.suite.resolve): the defaults, then the named preset's, then the suite's
        own keys, each one of the plugin's defaults and of the same type; the plugin's check is
        :meth:`plugin_check`'s."""
        try:
            return resolve_options(spec, table, what, reserved, check=False)
        except OptionError as exc:
            raise self.fail(f"{key}.{exc.key}" if exc.key else key, exc.message) from None

    def plugin_check(self, spec: Any, options: dict[str, Any], key: str) -> None:
        """Run the plugin's own ``check``; its ValueError("name: expectation") names the key."""
        try:
            check_options(spec, options)
        except OptionError as exc:
            raise self.fail(f"{key}.{exc.key}" if exc.key else key, exc.message) from None

    def typed(self, value: Any, default: Any, key: str) -> Any:
        try:
            return coerce_option(value, default)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
