"""A plugin's options, resolved one way wherever they come from: a suite table, ``--executor-option
KEY=VALUE`` or a figure's ``--option KEY=VALUE``.

:func:`resolve_options` applies, in order: the plugin's ``defaults``, the named ``preset``, the given
values (typed like their default, or one of the plugin's ``keywords``), then the plugin's ``check``.
Values typed on a command line are text; :func:`parse_text` reads them, with one definition of the
words that mean true and false (:data:`TRUE`, :data:`FALSE`). Every failure is an :class:`OptionError`
naming the option, which callers turn into their own one-line error (file and key, or the flag).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from harness.registry import did_you_mean

TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0")


class OptionError(ValueError):
    """``key`` (an option name, "" for the plugin as a whole): ``message``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key, self.message = key, message


def describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (dict, list)) else kind


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
        raise ValueError(f"expected {expected}, got {describe(value)}")
    return value


def parse_text(text: str, default: Any) -> Any:
    """A command-line value read for an option whose default is ``default``: a boolean from
    :data:`TRUE` / :data:`FALSE`, a number where the default is one, else the text itself (what
    does not fit is left for :func:`coerce_option` to report)."""
    text = text.strip()
    if isinstance(default, bool):
        lowered = text.lower()
        return True if lowered in TRUE else False if lowered in FALSE else text
    if isinstance(default, (int, float)):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return text


def split_pairs(pairs, flag: str) -> dict[str, str]:
    """``("a=1", "b=x")`` as ``{"a": "1", "b": "x"}``; a pair without ``=`` is an OptionError."""
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError("", f"{flag} {pair!r}: expected KEY=VALUE")
        given[key] = text
    return given


def resolve_options(spec: Any, given: Mapping[str, Any], what: str, reserved=(), text: bool = False,
                    check: bool = True) -> dict[str, Any]:
    """``spec``'s options: defaults, then ``given["preset"]``'s, then ``given``'s other keys (those in
    ``reserved`` are skipped; ``text``: the values are command-line strings), then ``spec.check``.
    ``what`` names the plugin in messages, e.g. "attack 'pgd'"."""
    options = dict(spec.defaults)
    defaults = {**spec.defaults, **getattr(spec, "optional", {})}  # optional ones only when given
    presets = getattr(spec, "presets", {})
    reserved = tuple(reserved) + ("preset",)
    if "preset" in given:
        preset = given["preset"]
        if not isinstance(preset, str) or preset not in presets:
            raise OptionError("preset", f"unknown preset {preset!r} for {what}{did_you_mean(str(preset), presets)}")
        options.update(presets[preset])
    keywords_of = getattr(spec, "keywords", {})
    for name, value in given.items():
        if name in reserved:
            continue
        if name not in defaults:
            hint = did_you_mean(name, list(defaults) + list(reserved)) or ("; it takes no options" if not defaults
                                                                           else "")
            raise OptionError(name, f"unknown parameter '{name}' for {what}{hint}")
        keywords = keywords_of.get(name, ())
        if text and isinstance(value, str) and value.strip() in keywords:
            value = value.strip()
        elif text:
            value = parse_text(value, defaults[name])
        if value in keywords:
            options[name] = value
            continue
        try:
            options[name] = coerce_option(value, defaults[name])
        except ValueError as exc:
            message = str(exc)
            if keywords:
                words = " or ".join(f'"{w}"' for w in keywords)
                message = message.replace(", got", f" or {words}, got", 1)
            raise OptionError(name, message) from None
    if check:
        check_options(spec, options)
    return options


def check_options(spec: Any, options: dict[str, Any]) -> None:
    """The plugin's own ``check``; its ValueError("name: expectation") becomes an OptionError."""
    if getattr(spec, "check", None) is None:
        return
    try:
        spec.check(dict(options))
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        raise (OptionError(name, message) if message else OptionError("", str(exc))) from None
