"""Built-in executor ``ray``: cells as Ray tasks, on a local Ray instance or a cluster
(``--executor ray --executor-option address=HOST:PORT``, or ``address=auto``).

Each trained model is made once, by a Ray task that trains it (or finds it) and stores it in the
shared model cache; then each of its cells is a Ray task that loads the model from the cache. On a
CUDA device every task asks Ray for ``num_gpus`` GPUs. Each task uses as many math threads as the
CPUs it asked for (``num_cpus``, at least 1) unless ``threads`` or ``$HARNESS_THREADS`` says
otherwise; results do not depend on the count (``harness.kit.threads``). Ray is optional and imported
only when this executor runs: ``pip install 'robustness-harness[ray]'``.
"""

from __future__ import annotations

import importlib.util
import socket

from harness import hookimpl
from harness.api import Executor
from harness.errors import HarnessError
from harness.kit.threads import threads_from_env

DEFAULTS = {
    "address": "",        # a running cluster ("auto", "host:6379"); "" starts a local one
    "cpus": 0,            # CPUs of a local instance (0: all of this machine's)
    "num_cpus": 1.0,      # CPUs each task asks for
    "num_gpus": 1.0,      # GPUs each task asks for when the device is CUDA (fractions share a GPU)
    "max_in_flight": 0,   # tasks submitted at once (0: as many as the cluster can run together)
    "threads": 0,         # math threads per task (0: $HARNESS_THREADS, else the task's num_cpus)
}
INSTALL = "pip install 'robustness-harness[ray]'"


def _check(options: dict) -> None:
    if importlib.util.find_spec("ray") is None:
        raise HarnessError(f"--executor ray: Ray is not installed; install it with: {INSTALL}")
    for key in ("num_cpus", "num_gpus"):
        if not options[key] > 0:
            raise ValueError(f"{key}: expected a positive number, got {options[key]!r}")
    for key in ("cpus", "max_in_flight", "threads"):
        if options[key] < 0:
            raise ValueError(f"{key}: expected 0 (automatic) or a positive integer, got {options[key]!r}")
    threads_from_env()  # a bad $HARNESS_THREADS fails here, before the run directory is touched
    _reachable(options["address"])


def _reachable(address: str) -> None:
    """Fail fast, before the run directory is touched, on a HOST:PORT nobody listens on: Ray itself
    retries for minutes before giving up."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "", "auto" and the forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise HarnessError(f"--executor-option address={address}: nothing answers there ({exc.strerror or exc}); start the "
                           f"cluster with `ray start --head` and pass the address it prints") from None


def run(plan, options: dict):
    from harness_ray.executor import run as run_on_ray

    return run_on_ray(plan, options)


@hookimpl
def harness_register_executors(register):
    register(Executor(name="ray", run=run, defaults=DEFAULTS, check=_check,
                      description="run cells as Ray tasks (a local instance, or a cluster's "
                                  "--executor-option address=HOST:PORT); "
                                  "models are trained once and shared through the model cache"))
