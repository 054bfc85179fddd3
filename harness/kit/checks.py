"""Small validators for plugins' ``check(options)``: each raises ValueError("key: expectation"),
which the suite loader turns into a one-line error naming the file and key."""

from __future__ import annotations


def positive(options: dict, *keys: str) -> None:
    for key in keys:
        if options[key] <= 0:
            raise ValueError(f"{key}: expected a positive number, got {options[key]!r}")


def at_least(options: dict, low: int, *keys: str) -> None:
    for key in keys:
        if options[key] < low:
            raise ValueError(f"{key}: expected an integer >= {low}, got {options[key]!r}")


def one_of(options: dict, key: str, allowed) -> None:
    if options[key] not in allowed:
        raise ValueError(f"{key}: expected one of {', '.join(map(str, allowed))}, got {options[key]!r}")
