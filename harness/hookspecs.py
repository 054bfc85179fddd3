"""The plugin contract. Every hook receives a ``register`` callback and calls it once per object.

``register`` checks the object's type, records which plugin registered it, and rejects a name that
another plugin already registered. Hooks are called once, when the registry is built.
"""

import pluggy

from harness import PROJECT

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def harness_register_datasets(register):
    """Register datasets: call ``register(harness.api.Dataset(...))`` for each. Returns nothing."""


@hookspec
def harness_register_learners(register):
    """Register learning rules used as training stages: ``register(harness.api.Learner(...))``.
    Returns nothing."""


@hookspec
def harness_register_models(register):
    """Register model architectures: ``register(harness.api.Model(...))``. Returns nothing."""


@hookspec
def harness_register_attacks(register):
    """Register attacks: ``register(harness.api.Attack(...))``; (name, backend) must be unique.
    Returns nothing."""


@hookspec
def harness_register_defenses(register):
    """Register defenses and logit rescalers: ``register(harness.api.Defense(...))``. Returns nothing."""


@hookspec
def harness_register_executors(register):
    """Register executors, which run a suite's cells somewhere (in process, on a Ray cluster, on
    Slurm): ``register(harness.api.Executor(...))``; ``harness run --executor NAME`` picks one.
    Returns nothing."""


@hookspec
def harness_register_commands(register):
    """Add CLI commands: ``register(command)`` with a ``click.Command`` or ``click.Group``; it becomes
    ``harness <command.name>``. Called when ``harness`` lists its commands (``--help``) or meets a
    name that is not a core command, so core commands never wait for plugins to load; a name that
    clashes with another command is an error. Returns nothing."""
