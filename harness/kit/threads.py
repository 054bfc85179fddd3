"""Math threads: how many a process uses, and results that do not depend on that number.

Two settings go into the environment of harness's own processes, unless the user set them already;
torch's OpenMP runtime reads them when torch is imported, MKL at its first call:

- ``MKL_CBWR=AUTO,STRICT``: MKL's strict conditional-numerical-reproducibility mode. Without it a
  float32 product such as ``W @ X.T`` gives different last bits with 1 and 2 threads, and over 20
  Hebbian epochs those bits move accuracies by up to 1.5 points between executors. In strict mode
  the products are bitwise the same for every thread count (measured on this project's CPUs, no
  slower), so a suite gives the same table whatever thread count an executor picks.
- ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=100``: an idle OpenMP thread spins 100 rounds,
  then sleeps. With torch's default (300 000 rounds), two processes of 2 threads each on 2 cores ran
  a Hebbian training 9x slower than one alone, burning the time in spin loops; with these settings
  the pair took 1.4x one run's wall time. Sleeping at once (no spin count) cost BP epochs 40 % on an
  idle machine; 100 rounds keep most of that (bench/concurrency.py, docs/thesis.md "Two runs at once").

Importing ``harness`` changes nothing (its pytest plugin is loaded in other projects' test runs too).
:func:`set_math_environment` is called where harness's processes begin, before torch is imported:
the ``harness`` program (harness.kit.cli_options, imported by harness.cli before any command imports
torch), and processes an executor starts (unpickling a :class:`harness.run.worker.Worker`; the Ray
driver also passes the settings to its workers). Every :class:`harness.run.runner.Runner` calls it too
(``harness.eval_model``, the ``run_suite`` fixture): in a process that imported torch first that is
too late for the process itself, not for the processes its executor starts. :func:`math_settings`
records which case a trained model was in.

The thread count itself: an explicit executor option ``threads``, else ``$HARNESS_THREADS``, else
the cores this process may run on (``os.sched_getaffinity``; a Ray task: the CPUs it asked for),
or fewer when the process used fewer before harness set the count (``OMP_NUM_THREADS``, the
caller's ``torch.set_num_threads``).
"""

from __future__ import annotations

import os
import sys

from harness.errors import HarnessError

ENV = "HARNESS_THREADS"
MATH_ENV = {"MKL_CBWR": "AUTO,STRICT", "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "100"}


_before_torch: bool | None = None  # at the first set_math_environment(): torch not imported yet
_initial_threads: int | None = None  # torch's thread count before use_threads first changed it


def set_math_environment() -> bool:
    """Put :data:`MATH_ENV` into ``os.environ`` where the user has not set those names, for this
    process's torch and the processes it starts. Returns whether this process's torch reads them:
    False when torch was imported before the first call (then only its child processes do)."""
    global _before_torch
    if _before_torch is None:
        _before_torch = "torch" not in sys.modules
    for name, value in MATH_ENV.items():
        os.environ.setdefault(name, value)
    return _before_torch


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
    """Set torch's intra-op thread count as :func:`choose_threads` says; returns it. The process's
    own count is the one torch had before the first call, so a run that chose 1 thread does not
    hold later runs of the same process to 1."""
    import torch

    global _initial_threads
    if _initial_threads is None:
        _initial_threads = torch.get_num_threads()
    count = choose_threads(explicit, cores, _initial_threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def math_settings() -> dict:
    """What decides the arithmetic of this process, for a trained model's sidecar: the thread count,
    the :data:`MATH_ENV` names as the environment holds them, and ``before_torch``: whether they
    were there before torch was imported (False: torch was imported before harness could set or
    check them, so they may not be the settings it computed with)."""
    import torch

    return {"threads": torch.get_num_threads(), **{name: os.environ.get(name) for name in MATH_ENV},
            "before_torch": bool(_before_torch)}
