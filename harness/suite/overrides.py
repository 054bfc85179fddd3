"""``harness run SUITE --set KEY=VALUE``: command-line changes to a suite without editing its file.

``KEY`` is a dotted TOML key into the suite (``models.bio.hidden``, ``data.test_size``, ``grid.eps``;
quoted parts for keys with dots, a number for an element of a list of tables:
``models.bio.stages.1.epochs``, ``grid.0.eps``). ``VALUE`` is a TOML value (``100``, ``1e5``,
``[0.1, 0.2]``, ``"text"``, ``{ attack = "fgsm" }``); a bare word such as ``auto`` is taken as a
string. Overrides are applied, in order, to the parsed file before it is validated, so an
overridden key is checked exactly like the same key written in the file. The effective suite is
written back as TOML (:func:`effective_text`): ``harness run`` keeps it as the run directory's
``suite.toml``, so the run can be continued from it.
"""

from __future__ import annotations

import copy
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, Sequence

from harness.errors import SuiteError
from harness.registry import did_you_mean
from harness.suite.tomlwrite import to_toml

# The tables whose entries are named by the suite author: a key that names no entry there is most
# likely a typo, unless the override declares a new entry (it sets the entry's plugin key).
NAMED = {"models": "model", "defenses": "defense", "attacks": "attack"}
_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:@/+-]*$")


def parse(pair: str) -> tuple[list[str], Any]:
    """``"models.bio.hidden=100"`` -> (["models", "bio", "hidden"], 100)."""
    key, sep, text = pair.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key:
        raise SuiteError(f"--set {pair}: expected KEY=VALUE, e.g. --set models.bio.hidden=2000")
    return key_parts(key, pair), value(text, pair)


def key_parts(key: str, pair: str) -> list[str]:
    """The parts of a dotted TOML key, quoted parts included (``models."a.b".hidden``)."""
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        raise SuiteError(f"--set {pair}: '{key}' is not a dotted key like models.bio.hidden "
                         f"(quote a part that holds other characters: models.\"my.net\".hidden)") from None
    parts = []
    while isinstance(node, dict):
        if len(node) != 1:
            raise SuiteError(f"--set {pair}: expected one dotted key before '='")
        (part, node), = node.items()
        parts.append(part)
    return parts


def value(text: str, pair: str, option: str = "--set") -> Any:
    """A TOML value; a bare word that is no TOML value (auto, mnist) is a string."""
    try:
        document = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError as exc:
        if _BARE_WORD.match(text):
            return text
        raise SuiteError(f"{option} {pair}: '{text}' is not a TOML value ({exc}); write numbers as 100 or 1e5, "
                         f"lists as [0.1, 0.2], strings in quotes: '\"text\"'") from None
    if set(document) != {"v"}:
        raise SuiteError(f"{option} {pair}: expected one value after '=', got more")
    return document["v"]


def apply(raw: dict[str, Any], pairs: Sequence[str], path: Path) -> dict[str, Any]:
    """A copy of the parsed suite ``raw`` with every ``KEY=VALUE`` of ``pairs`` set, in order.
    Missing tables on the way are created (validation then names a misspelled one), except an
    entry of [models], [defenses] or [attacks] that the suite does not declare: that is reported
    here with the declared names, unless the override sets the new entry's plugin key."""
    result = copy.deepcopy(raw)
    for pair in pairs:
        parts, new = parse(pair)
        _set(result, parts, new, pair, path)
    return result


def _set(raw: dict[str, Any], parts: list[str], new: Any, pair: str, path: Path) -> None:
    node: Any = raw
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                parent = ".".join(parts[:depth])
                raise SuiteError(f"{path}: {where}: {parent} is a list of {len(node)} tables; name one by its "
                                 f"index, {parent}.0 to {parent}.{len(node) - 1} (--set {pair})")
            if last:
                node[int(part)] = new
                return
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            parent = ".".join(parts[:depth])
            raise SuiteError(f"{path}: {parent}: is a value ({node!r}), not a table, so it has no "
                             f"'{part}' (--set {pair})")
        if last:
            node[part] = new
            return
        if part not in node:
            section = parts[depth - 1] if depth == 1 else None
            if section in NAMED and parts[depth + 1:] != [NAMED[section]] and not isinstance(new, dict):
                raise SuiteError(f"{path}: {where}: the suite declares no {section}.{part}"
                                 f"{did_you_mean(part, node)} (--set {pair})")
            node[part] = {}
        node = node[part]


def blame(error: SuiteError, path: Path, pairs: Sequence[str]) -> SuiteError:
    """``error`` with the override that set its key named, when one did (the key is not in the file)."""
    text = str(error)
    prefix = f"{path}: "
    if not text.startswith(prefix):
        return error
    key = text[len(prefix):].partition(":")[0]
    for pair in reversed(pairs):
        set_key = pair.partition("=")[0].strip()
        if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
            return SuiteError(f"{text} (--set {pair})")
    return error


def effective_text(raw: dict[str, Any], source: Path, pairs: Sequence[str]) -> str:
    """The effective suite as TOML, with a header naming its source and the overrides."""
    header = [f"# The effective suite of a run: {source} with", *(f"#   --set {p}" for p in pairs),
              "# written by `harness run`; `harness run THIS_FILE --out RUN_DIR` continues the run.", "", ""]
    return "\n".join(header) + to_toml(raw)


def digest(pairs: Sequence[str]) -> str:
    """Six hex digits naming a set of overrides, for a run directory of its own."""
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:6]
