"""Suites: a TOML file read, checked and expanded into cells (``load``: the loader and
:class:`~harness.suite.load.Suite`; ``check``: what the loader and the grid share, :class:`~harness.suite.check.Cell`
among it; ``grid``: the product of the axes minus the excludes; ``resolve``: a plugin's options typed and
checked; ``overrides``: ``--set KEY=VALUE``; ``sample``: the test subset; ``tomlwrite``: TOML text back
from Python values; ``generate``: the suite ``harness eval`` writes)."""
