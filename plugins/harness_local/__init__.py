"""Built-in executor ``local``: every cell in this process, one trained model at a time (the default).

Each group of cells that shares a trained model is run in turn; Ctrl-C stops after the cell in
progress.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Executor


def run(plan, options: dict):
    for group in plan.groups:
        if plan.stopping():
            return
        yield from plan.worker.run_group(group, plan.stopping)


@hookimpl
def harness_register_executors(register):
    register(Executor(name="local", run=run,
                      description="run every cell in this process, one trained model at a time (default)"))
