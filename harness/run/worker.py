"""Running jobs, wherever an executor runs them: dataset, trained model (:mod:`harness.run.training`:
from ``OUT/models``, the shared cache, or the learner stages), then each job's outcome
(:mod:`harness.run.cell`: defense-wrapped model, attack, row).

A :class:`Worker` (the core's :class:`harness.api.CellWorker`) writes trained models (to ``OUT/models``
and the cache) and nothing else: each cell's :class:`harness.api.Outcome` goes back to the runner,
which alone writes ``results.csv`` and ``OUT/examples``. A worker pickles without its registry and
rebuilds it from the plugins' entry points in the process that unpickles it, so executors can send
it to other processes and machines; it holds the one dataset in memory and the last model it loaded.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.api import Group, Outcome, Trained
from harness.errors import HarnessError, one_line
from harness.kit.threads import set_math_environment
from harness.registry import Registry
from harness.results.rundir import RunDir
from harness.run.cache import ModelCache
from harness.run.cell import CellEvaluation
from harness.run.evaluator import Evaluator
from harness.run.jobs import Job
from harness.run.progress import SilentProgress
from harness.run.training import Data, Training
from harness.suite.load import Suite

PLUGIN_ENV = ("HARNESS_LOAD_PLUGINS", "HARNESS_BLOCK_PLUGINS")
_UNPICKLED = ("_registry", "progress", "_data", "_loaded", "_training", "_evaluation")


class Worker:
    """What an executor runs jobs with: data, models (:class:`Training`) and cells
    (:class:`CellEvaluation`) for one suite and run directory, each built once per process."""

    def __init__(self, suite: Suite, registry: Registry | None, out_dir: Path, data_root: Path, device,
                 cache: ModelCache | None = None, progress=None) -> None:
        import torch

        self.suite, self.cache = suite, cache
        # absolute, because another process may start in another directory
        self.out_dir, self.data_root = Path(out_dir).absolute(), Path(data_root).absolute()
        self.run_dir = RunDir(self.out_dir)
        self.device = torch.device(device)
        self.progress = progress or SilentProgress()
        self.token = uuid.uuid4().hex  # the same worker, wherever it is unpickled
        self._registry = registry
        self._plugin_env = {name: os.environ.get(name) for name in PLUGIN_ENV}
        self._data: tuple[str, Data] | None = None  # the one dataset held in memory
        self._loaded: tuple[str, Any] | None = None  # the last model run_cell loaded
        self._training: Training | None = None
        self._evaluation: CellEvaluation | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}
        state["device"] = str(self.device)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_math_environment()  # in a process an executor started, often before anything imported torch
        import torch

        self.__dict__.update(state)
        self.device = torch.device(state["device"])
        self.__dict__.update(dict.fromkeys(_UNPICKLED))
        self.progress = SilentProgress()

    def for_device(self, device: str) -> "Worker":
        """The same worker on another device, e.g. "cuda" inside a task that was given one GPU."""
        clone = Worker(self.suite, self._registry, self.out_dir, self.data_root, device, self.cache, self.progress)
        clone.token, clone._plugin_env = f"{self.token}-{device}", self._plugin_env
        return clone

    @property
    def registry(self) -> Registry:
        if self._registry is None:  # unpickled: the plugins the driver allowed, from entry points
            from harness.plugins import load_registry

            try:
                with _environment(self._plugin_env):
                    self._registry = load_registry()
            except HarnessError as exc:  # Ray puts the driver's directory first on a task's sys.path
                raise HarnessError(f"{exc} (in a process the executor started, which must see the plugins the "
                                   f"driver sees: is there a stale *.egg-info in the driver's directory?)") from None
        return self._registry

    # -- what executors call -----------------------------------------------------------------
    def run_group(self, group: Group, stopping: Callable[[], bool] = lambda: False) -> Iterator[Outcome]:
        """The group's outcomes, one job at a time, in this process; stops early when ``stopping()``."""
        try:
            data = self.load_data(group.dataset)
            module, model_hash = self.model(group.dataset, group.model, group.seed)
        except Exception as exc:  # a failing learner costs its cells, not the suite
            message = one_line(exc)
            self.progress.log(f"[red]model {group.model} on {group.dataset} (seed {group.seed}) failed: {message}[/red]")
            for job in group.cells:
                yield self.failed(job, message)
            return
        evaluator, defended = Evaluator(data.x_test, data.y_test, self.suite.batch_size), {}
        for job in group.cells:
            if stopping():
                return
            yield self.evaluation.cell(job, module, model_hash, evaluator, defended)
        del module, defended
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def train(self, group: Group) -> Trained:
        """Make sure the group's model is in ``OUT/models`` and the cache, training it if needed."""
        try:
            _, model_hash, message = self.training.obtain(group.dataset, group.model, group.seed)
        except Exception as exc:
            return Trained("", "", error=one_line(exc))
        return Trained(model_hash, message)

    def run_cell(self, job: Job, model_hash: str) -> Outcome:
        """One job, with the model :meth:`train` stored under ``model_hash``."""
        cell = job.cell
        try:
            data = self.load_data(cell.dataset)
            if self._loaded is None or self._loaded[0] != model_hash:
                self._loaded = None  # free the previous model first
                self._loaded = (model_hash, self.training.stored(cell.model, cell.seed, model_hash)[0])
        except Exception as exc:
            return self.failed(job, one_line(exc), model_hash)
        evaluator = Evaluator(data.x_test, data.y_test, self.suite.batch_size)
        return self.evaluation.cell(job, self._loaded[1], model_hash, evaluator, {})

    def failed(self, job: Job, message: str, model_hash: str = "") -> Outcome:
        return self.evaluation.failed(job, message, model_hash)

    # -- data --------------------------------------------------------------------------------
    def load_data(self, name: str) -> Data:
        if self._data is not None and self._data[0] == name:
            return self._data[1]
        self._data = None  # free the previous dataset first
        dataset = self.registry.datasets.get(name)
        self.progress.log(f"dataset {name}: checking files under {self.data_root}")
        dataset.fetch(self.data_root)
        x_train, y_train = dataset.load(self.data_root, True)
        x_test, y_test = dataset.load(self.data_root, False)
        s = self.suite
        x_train, y_train = x_train[: s.train_size], y_train[: s.train_size]
        x_test, y_test = s.test_images(x_test, y_test, name)
        to = lambda t: t.to(self.device)  # noqa: E731
        self._data = (name, Data(to(x_train), to(y_train), to(x_test), to(y_test)))
        return self._data[1]

    # -- models ----------------------------------------------------------------------------------
    @property
    def training(self) -> Training:
        if self._training is None:
            self._training = Training(self.suite, self.registry, self.run_dir, self.device, self.cache,
                                      self.progress, self.load_data)
        return self._training

    @property
    def evaluation(self) -> CellEvaluation:
        if self._evaluation is None:
            self._evaluation = CellEvaluation(self.suite, self.registry, self.device, self.progress,
                                              obtain=lambda dataset, key, seed: self.model(dataset, key, seed)[0])
        return self._evaluation

    def model(self, dataset: str, key: str, seed: int):
        """(module, model_hash): from ``OUT/models``, else the cache, else trained and stored in both."""
        module, model_hash, message = self.training.obtain(dataset, key, seed)
        self.progress.log(message)
        return module, model_hash


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) for the duration of the block."""
    saved = {name: os.environ.get(name) for name in values}

    def apply(settings):
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    apply(values)
    try:
        yield
    finally:
        apply(saved)
