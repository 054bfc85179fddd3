"""Errors the CLI turns into one line and exit code 2 (user input) or a cell error (plugin failure)."""

import traceback
from pathlib import Path


class HarnessError(Exception):
    """A problem the user can fix: bad suite, unknown name, missing data. Shown as one line, exit 2."""


class SuiteError(HarnessError):
    """A suite file that cannot be read or does not validate; the message names file, key and fix."""


class RegistryError(HarnessError):
    """An unknown name or a name registered twice."""


class DataError(HarnessError):
    """Data that is missing, corrupt or cannot be fetched; the message says how to get it."""


class PluginError(HarnessError):
    """A plugin that breaks the contract (wrong object handed to ``register``, misspelled hook)."""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: a :class:`HarnessError`'s message as it is, any other exception with its
    type and where it was raised (what a failed cell's row records)."""
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, HarnessError):
        return message
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {message}{where}"
