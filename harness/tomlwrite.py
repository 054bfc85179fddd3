"""TOML text from Python values: the inverse of ``tomllib`` for what suites hold (tables, lists of
tables, strings, numbers, booleans). Used to write the effective suite of a run (``--set``, ``harness
eval``) and by the test fixtures (:mod:`harness.testing`)."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(document: Mapping[str, Any]) -> str:
    """A suite dict as TOML text: tables as ``[a.b]`` sections, lists of tables as ``[[a.b]]``
    sections (e.g. ``[[models.bio.stages]]``), everything else inline. Raises TypeError for values
    TOML cannot hold (None, objects), naming the key."""
    lines: list[str] = []
    _toml_table(document, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings; got {key!r}")
    return key if _BARE_KEY.match(key) else toml_string(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _toml_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    nested = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_table_list(value):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {toml_value(value, [*path, key])}")
    for key, value in nested:
        header = ".".join(_toml_key(part) for part in [*path, key])
        for item in ([value] if isinstance(value, Mapping) else value):
            only_tables = item and all(isinstance(v, Mapping) or _is_table_list(v) for v in item.values())
            if not (isinstance(value, Mapping) and only_tables):  # [models] before [models.bio]: noise
                lines += ["", f"[{header}]" if isinstance(value, Mapping) else f"[[{header}]]"]
            _toml_table(item, [*path, key], lines)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join("\\" + ch if ch in '"\\' else f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F
                      else ch for ch in text)
    return f'"{escaped}"'


def toml_value(value: Any, path: Sequence[str] = ()) -> str:
    """One TOML value written inline (tables as inline tables); ``path`` names it in errors."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item, path) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v, [*path, k])}" for k, v in value.items()) + "}"
    raise TypeError(f"{'.'.join(map(str, path))}: TOML cannot hold {type(value).__name__} ({value!r})")
