"""What runs inside Ray's worker processes."""

from __future__ import annotations

from harness.kit.threads import use_threads
from harness.run.worker import Outcome, Trained, Worker

# Ray reuses worker processes: the worker unpickled for one task keeps its loaded dataset and model
# for the next task of the same run, instead of reading MNIST again for every cell.
_KEPT: dict[str, Worker] = {}


def _kept(worker: Worker) -> Worker:
    if worker.token not in _KEPT:
        _KEPT.clear()  # another run's worker: free its data
        _KEPT[worker.token] = worker
    return _KEPT[worker.token]


def train(worker: Worker, group, threads: tuple[int, float] = (0, 1.0)) -> Trained:
    use_threads(*threads)
    return _kept(worker).train(group)


def run_cell(worker: Worker, cell, model_hash: str, threads: tuple[int, float] = (0, 1.0)) -> Outcome:
    use_threads(*threads)
    return _kept(worker).run_cell(cell, model_hash)
