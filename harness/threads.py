"""Math threads: how many a process uses, and results that do not depend on that number.

Two settings are made in the environment when ``harness`` is imported, before torch loads its
OpenMP and MKL runtimes (they read them once, at start), unless the user set them already:

- ``MKL_CBWR=AUTO,STRICT``: MKL's strict conditional-numerical-reproducibility mode. Without it a
  float32 product such as ``W @ X.T`` gives different last bits with 1 and 2 threads, and over 20
  Hebbian epochs those bits move accuracies by up to 1.5 points between executors. In strict mode
  the products are bitwise the same for every thread count (measured on this project's CPUs, no
  slower), so a suite gives the same table whatever thread count an executor picks.
- ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=100``: an idle OpenMP thread spins 100 rounds,
  then sleeps. With torch's default (300 000 rounds), two processes of 2 threads each on 2 cores ran
  a Hebbian training 9x slower than one alone, burning the time in spin loops; with these settings
  the pair took 1.4x one run's wall time. Sleeping at once (no spin count) cost BP epochs 40 % on an
  idle machine; 100 rounds keep most of that (bench/concurrency.py, README "Speed").

The thread count itself: an explicit executor option ``threads``, else ``$HARNESS_THREADS``, else
the cores this process may run on (``os.sched_getaffinity``; a Ray task: the CPUs it asked for),
or fewer when the process already uses fewer (``OMP_NUM_THREADS``, ``torch.set_num_threads``).
"""

from __future__ import annotations

import os

from harness.errors import HarnessError

ENV = "HARNESS_THREADS"
MATH_ENV = {"MKL_CBWR": "AUTO,STRICT", "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "100"}


def set_math_environment() -> None:
    """Put :data:`MATH_ENV` into ``os.environ`` where the user has not set those names."""
    for name, value in MATH_ENV.items():
        os.environ.setdefault(name, value)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; all cores where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def threads_from_env() -> int:
    """``$HARNESS_THREADS`` as a positive integer, 0 when unset; a bad value is one line, exit 2."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise HarnessError(f"${ENV}={text!r}: expected a positive integer (math threads per process); "
                           f"unset it to use the cores this process may run on")
    return int(text)


def choose_threads(explicit: int = 0, cores: float | None = None, current: int | None = None) -> int:
    """``explicit`` when positive, else ``$HARNESS_THREADS``, else ``cores`` (what the executor gave
    this process, e.g. a Ray task's ``num_cpus``), else :func:`usable_cores`, or ``current`` (the
    process's count, e.g. from ``OMP_NUM_THREADS``) when that is lower."""
    if explicit > 0:
        return int(explicit)
    from_env = threads_from_env()
    if from_env:
        return from_env
    if cores:
        return max(1, int(cores))
    return min(usable_cores(), current or usable_cores())


def use_threads(explicit: int = 0, cores: float | None = None) -> int:
    """Set torch's intra-op thread count as :func:`choose_threads` says; returns it."""
    import torch

    count = choose_threads(explicit, cores, torch.get_num_threads())
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def math_settings() -> dict:
    """What decides the arithmetic of this process, for a trained model's sidecar."""
    import torch

    return {"threads": torch.get_num_threads(), **{name: os.environ.get(name) for name in MATH_ENV}}
