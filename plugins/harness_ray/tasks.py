"""What runs inside Ray's worker processes."""

from __future__ import annotations

from harness.api import CellWorker, Outcome, Trained
from harness.kit.threads import use_threads

# Ray reuses worker processes: the worker unpickled for one task keeps its loaded dataset and model
# for the next task of the same run, instead of reading MNIST again for every cell.
_KEPT: dict[str, CellWorker] = {}


def _kept(worker: CellWorker) -> CellWorker:
    if worker.token not in _KEPT:
        _KEPT.clear()  # another run's worker: free its data
        _KEPT[worker.token] = worker
    return _KEPT[worker.token]


def train(worker: CellWorker, group, threads: tuple[int, float] = (0, 1.0)) -> Trained:
    use_threads(*threads)
    return _kept(worker).train(group)


def run_cell(worker: CellWorker, job, model_hash: str, threads: tuple[int, float] = (0, 1.0)) -> Outcome:
    use_threads(*threads)
    return _kept(worker).run_cell(job, model_hash)
