"""Suites: a TOML file read, checked and expanded into cells. ``load``: the loader,
:class:`~harness.suite.load.Suite` and ``config_hash``; ``validate``: what the loader and the grid
share (:class:`~harness.suite.validate.Cell`, the grid's axes, the SuiteChecker that turns every
failure into one line naming file and key); ``grid``: the product of the axes minus the excludes;
``resolve``: a plugin's options typed and checked; ``overrides``: ``--set KEY=VALUE``; ``sample``:
the test subset; ``tomlwrite``: TOML text back from Python values; ``generate``: the suite
``harness eval`` writes."""
