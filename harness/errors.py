"""Errors the CLI turns into one line and exit code 2 (user input) or a cell error (plugin failure)."""


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
