"""TOML text from Python values, the inverse of ``tomllib`` for what suites hold (tables, lists of
tables, strings, numbers, booleans). Used to write the effective suite of a run (``--set``, ``harness
eval``) and by the test fixtures (:mod:`harness.testing`). The writing itself is tomli-w's, the
maintained writer that pairs with the standard library's reader."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Mapping, Sequence

import tomli_w

_SCALARS = (str, bool, int, float, date, datetime, time)


def to_toml(document: Mapping[str, Any]) -> str:
    """A suite dict as TOML text (tables as ``[a.b]`` sections, lists of tables as arrays of
    inline tables, as tomli-w writes them). Raises TypeError naming the dotted key of the first
    value TOML cannot hold (None, objects)."""
    try:
        return tomli_w.dumps(document)
    except TypeError:
        path, value = _unwritable(document, [])
        raise TypeError(f"{'.'.join(map(str, path))}: TOML cannot hold {type(value).__name__} ({value!r})") from None


def _unwritable(value: Any, path: list) -> tuple[list, Any]:
    """(dotted path, value) of the first value below ``value`` that TOML cannot hold."""
    if isinstance(value, Mapping):
        items: Sequence = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))
    elif isinstance(value, _SCALARS):
        return [], None
    else:
        return path, value
    for key, item in items:
        found, bad = _unwritable(item, [*path, key])
        if found:
            return found, bad
    return [], None
