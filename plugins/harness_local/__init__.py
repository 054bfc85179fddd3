"""Built-in executor ``local``: every cell in this process, one trained model at a time (the default).

Each group of cells that shares a trained model is run in turn; Ctrl-C stops after the cell in
progress. Math threads: option ``threads`` (``--executor-option threads=N``), else
``$HARNESS_THREADS``, else the cores this process may run on (``harness.kit.threads``); results do not
depend on the count.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Executor


DEFAULTS = {"threads": 0}  # math threads (0: $HARNESS_THREADS, else the cores this process may use)


def _check(options: dict) -> None:
    from harness.kit.checks import at_least
    from harness.kit.threads import threads_from_env

    at_least(options, 0, "threads")
    threads_from_env()  # a bad $HARNESS_THREADS fails here, before the run directory is touched


def run(plan, options: dict):
    from harness.kit.threads import use_threads

    use_threads(options.get("threads", 0))
    for group in plan.groups:
        if plan.stopping():
            return
        yield from plan.worker.run_group(group, plan.stopping)


@hookimpl
def harness_register_executors(register):
    register(Executor(name="local", run=run, defaults=DEFAULTS, check=_check, default=True,
                      description="run every cell in this process, one trained model at a time (default)"))
