"""Running cells, wherever an executor runs them: dataset, trained model (from ``OUT/models``, the
shared cache, or the learner stages), defense-wrapped model, attack, outcome.

A :class:`Worker` writes trained models (to ``OUT/models`` and the cache) and nothing else: each cell's
:class:`Outcome` goes back to the runner, which alone writes ``results.csv`` and ``OUT/examples``.
A worker pickles without its registry and rebuilds it from the plugins' entry points in the process
that unpickles it, so executors can send it to other processes and machines.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import random
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from harness import __version__
from harness.api import TrainContext
from harness.cache import ModelCache, model_identity
from harness.errors import HarnessError
from harness.evaluate import Evaluator
from harness.modelstore import load_model, save_model
from harness.progress import SilentProgress
from harness.registry import Registry
from harness.results import Row
from harness.suite import NO_DEFENSE, Cell, Suite, config_hash

NAN = float("nan")
PLUGIN_ENV = ("HARNESS_LOAD_PLUGINS", "HARNESS_BLOCK_PLUGINS")


@dataclass(frozen=True)
class Group:
    """Cells that share one trained model."""

    dataset: str
    model: str
    seed: int
    cells: tuple[Cell, ...]


@dataclass
class Outcome:
    """One cell's row (the :class:`harness.results.Row` fields) and its per-image results, which
    worst-case rows need: ``{"correct": uint8 tensor, "robust": uint8 tensor}``, None on failure."""

    row: dict[str, Any]
    examples: dict[str, Any] | None = None


@dataclass(frozen=True)
class Trained:
    """What :meth:`Worker.train` did: the model's hash and a line for the user, or an error."""

    model_hash: str
    message: str
    error: str = ""


@dataclass
class Plan:
    """What an executor gets (see :class:`harness.api.Executor`)."""

    groups: list[Group]
    worker: "Worker"
    stopping: Callable[[], bool]
    log: Callable[[str], None]


@dataclass
class Data:
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


def group_cells(cells: list[Cell]) -> list[Group]:
    """Cells by trained model, datasets in order so each is loaded once."""
    groups: dict[tuple[str, str, int], list[Cell]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(c.dataset for c in cells))}
    for cell in sorted(cells, key=lambda c: order[c.dataset]):
        groups.setdefault((cell.dataset, cell.model, cell.seed), []).append(cell)
    return [Group(*key, tuple(members)) for key, members in groups.items()]


def select_params(module, patterns, where: str) -> dict[str, Any]:
    """Parameters whose names match any of the ``fnmatch`` patterns; a pattern matching none fails."""
    named = dict(module.named_parameters())
    selected = {}
    for pattern in patterns:
        hits = [name for name in named if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise HarnessError(f"{where}: pattern '{pattern}' matches no parameter "
                               f"(the model has: {', '.join(named)})")
        selected.update({name: named[name] for name in hits})
    return selected


def learner_summary(suite: Suite, key: str) -> str:
    return " > ".join(f"{s.learner}[{','.join(s.params)}{',frozen' if s.freeze else ''}]"
                      for s in suite.models[key].stages)


class Worker:
    def __init__(self, suite: Suite, registry: Registry | None, out_dir: Path, data_root: Path, device,
                 cache: ModelCache | None = None, progress=None) -> None:
        import torch

        self.suite, self.cache = suite, cache
        # absolute, because another process may start in another directory
        self.out_dir, self.data_root = Path(out_dir).absolute(), Path(data_root).absolute()
        self.device = torch.device(device)
        self.progress = progress or SilentProgress()
        self.token = uuid.uuid4().hex  # the same worker, wherever it is unpickled
        self._registry = registry
        self._plugin_env = {name: os.environ.get(name) for name in PLUGIN_ENV}
        self._data: tuple[str, Data] | None = None  # the one dataset held in memory
        self._loaded: tuple[str, Any] | None = None  # the last model run_cell loaded

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_registry", "progress", "_data", "_loaded")}
        state["device"] = str(self.device)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import torch

        self.__dict__.update(state)
        self.device = torch.device(state["device"])
        self._registry, self.progress, self._data, self._loaded = None, SilentProgress(), None, None

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

    def info(self, dataset: str):
        return self.registry.get("datasets", dataset).info

    # -- what executors call -----------------------------------------------------------------
    def run_group(self, group: Group, stopping: Callable[[], bool] = lambda: False) -> Iterator[Outcome]:
        """The group's outcomes, one cell at a time, in this process; stops early when ``stopping()``."""
        try:
            data = self.load_data(group.dataset)
            module, model_hash = self.model(group.dataset, group.model, group.seed)
        except Exception as exc:  # a failing learner costs its cells, not the suite
            message = one_line(exc)
            self.progress.log(f"[red]model {group.model} on {group.dataset} (seed {group.seed}) failed: {message}[/red]")
            for cell in group.cells:
                yield self.failed(cell, message)
            return
        evaluator, defended = Evaluator(data.x_test, data.y_test, self.suite.batch_size), {}
        for cell in group.cells:
            if stopping():
                return
            yield self._cell(cell, module, model_hash, evaluator, defended)
        del module, defended
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def train(self, group: Group) -> Trained:
        """Make sure the group's model is in ``OUT/models`` and the cache, training it if needed."""
        try:
            _, model_hash, message = self._obtain(group.dataset, group.model, group.seed)
        except Exception as exc:
            return Trained("", "", error=one_line(exc))
        return Trained(model_hash, message)

    def run_cell(self, cell: Cell, model_hash: str) -> Outcome:
        """One cell, with the model :meth:`train` stored under ``model_hash``."""
        try:
            data = self.load_data(cell.dataset)
            if self._loaded is None or self._loaded[0] != model_hash:
                self._loaded = None  # free the previous model first
                self._loaded = (model_hash, self._stored(cell.model, cell.seed, model_hash)[0])
        except Exception as exc:
            return self.failed(cell, one_line(exc), model_hash)
        evaluator = Evaluator(data.x_test, data.y_test, self.suite.batch_size)
        return self._cell(cell, self._loaded[1], model_hash, evaluator, {})

    def failed(self, cell: Cell, message: str, model_hash: str = "") -> Outcome:
        return Outcome(asdict(self._base_row(cell, status="error", error=message, model_hash=model_hash)))

    # -- data --------------------------------------------------------------------------------
    def load_data(self, name: str) -> Data:
        if self._data is not None and self._data[0] == name:
            return self._data[1]
        self._data = None  # free the previous dataset first
        dataset = self.registry.get("datasets", name)
        self.progress.log(f"dataset {name}: checking files under {self.data_root}")
        dataset.fetch(self.data_root)
        x_train, y_train = dataset.load(self.data_root, True)
        x_test, y_test = dataset.load(self.data_root, False)
        s = self.suite
        x_train, y_train = x_train[: s.train_size], y_train[: s.train_size]
        x_test, y_test = x_test[: s.test_size], y_test[: s.test_size]
        to = lambda t: t.to(self.device)  # noqa: E731
        self._data = (name, Data(to(x_train), to(y_train), to(x_test), to(y_test)))
        return self._data[1]

    # -- models ------------------------------------------------------------------------------
    def model(self, dataset: str, key: str, seed: int):
        """(module, model_hash): from ``OUT/models``, else the cache, else trained and stored in both."""
        module, model_hash, message = self._obtain(dataset, key, seed)
        self.progress.log(message)
        return module, model_hash

    def model_path(self, key: str, seed: int, model_hash: str) -> Path:
        return self.out_dir / "models" / f"{key}-seed{seed}-{model_hash}.safetensors"

    def _obtain(self, dataset: str, key: str, seed: int):
        config, model_hash = model_identity(self.suite, self.registry, dataset, key, seed)
        stored = self._stored(key, seed, model_hash, required=False)
        if stored is not None:
            module, where = stored
            return module, model_hash, f"model {key} on {dataset} (seed {seed}): reusing {where}"
        module, message = self._train_and_store(dataset, key, seed, config, model_hash)
        return module, model_hash, message

    def _stored(self, key: str, seed: int, model_hash: str, required: bool = True):
        """(module, where it came from) from ``OUT/models`` or the cache (copied to ``OUT/models``)."""
        path = self.model_path(key, seed, model_hash)
        if path.exists() and path.with_suffix(".json").exists():
            where = str(path)
        elif self.cache is not None and self.cache.fetch(model_hash, path):
            where = f"{self.cache.weights(model_hash)} (model cache)"
        elif required:
            raise HarnessError(f"model {key} (seed {seed}, hash {model_hash}) is neither in {path.parent} nor in "
                               f"the model cache ({self.cache.root if self.cache else 'off'})")
        else:
            return None
        return load_model(path, self.registry, self.device)[0], where

    def _train_and_store(self, dataset: str, key: str, seed: int, config: dict, model_hash: str):
        data = self.load_data(dataset)
        module, history, seconds = self._train(dataset, key, seed, data)
        accuracy = Evaluator(data.x_test, data.y_test, self.suite.batch_size).clean_accuracy(module)
        component = self.suite.models[key]
        sidecar = {"format": 1, "model": component.plugin, "model_key": key, "options": component.options,
                   "info": asdict(self.info(dataset)), "config": config, "model_hash": model_hash,
                   "stages": history, "train_seconds": seconds, "test_accuracy": accuracy,
                   "test_size": len(data.y_test), "versions": versions(), "device": str(self.device)}
        path = self.model_path(key, seed, model_hash)
        save_model(module, self.registry.get("models", component.plugin), path, sidecar)
        if self.cache is not None:
            self.cache.store(model_hash, path)
        return module, (f"model {key} on {dataset} (seed {seed}): trained in {seconds:.1f}s, "
                        f"test accuracy {100 * accuracy:.2f}% on {len(data.y_test)} images")

    def _train(self, dataset: str, key: str, seed: int, data: Data):
        import torch

        component = self.suite.models[key]
        torch.manual_seed(seed)
        info = self.info(dataset)
        module = self.registry.get("models", component.plugin).build(component.options, info)
        module = module.to(self.device)
        frozen: set[str] = set()
        history = []
        start = time.perf_counter()
        for index, stage in enumerate(component.stages):
            where = f"{self.suite.path}: models.{key}.stages.{index}.params"
            params = {n: p for n, p in select_params(module, stage.params, where).items() if n not in frozen}
            if not params:
                raise HarnessError(f"{where}: every matching parameter was frozen by an earlier stage")
            for name, param in module.named_parameters():
                param.requires_grad_(name in params)
            learner = self.registry.get("learners", stage.learner)
            torch.manual_seed(seed * 1000 + index)
            module.train()

            def progress(total, description=None, _l=stage.learner):
                return self.progress.task(description or f"train {key} ({dataset}) seed {seed}: {_l}", total)

            ctx = TrainContext(model=module, params=params, options=dict(stage.options), x=data.x_train,
                               y=data.y_train, x_test=data.x_test, y_test=data.y_test, device=self.device,
                               seed=seed, progress=progress, info=info)
            stats = learner.train(ctx) or {}
            for name, param in params.items():
                if not torch.isfinite(param).all():
                    raise HarnessError(f"stage {index} ({stage.learner}) left NaN or inf in {name}")
            if stage.freeze:
                frozen.update(params)
            history.append({"learner": stage.learner, "params": sorted(params), "frozen": stage.freeze,
                            "options": stage.options, "stats": stats})
        for param in module.parameters():
            param.requires_grad_(False)
        return module.eval(), history, time.perf_counter() - start

    # -- cells -------------------------------------------------------------------------------
    def _base_row(self, cell: Cell, **values) -> Row:
        attack = self.suite.attacks[cell.attack]
        spec = self.registry.attack(attack.plugin, attack.backend)
        defense = self.suite.defenses.get(cell.defense)
        defaults = dict(n=0, clean_acc=NAN, robust_acc=NAN, zero_grad_share=NAN, nonfinite_grad_share=NAN,
                        converged_gap=NAN, seconds=0.0, status="ok", error="", model_hash="", T=1.0)
        defaults.update(values)
        return Row(suite=self.suite.name, dataset=cell.dataset, model=cell.model,
                   architecture=self.suite.models[cell.model].plugin,
                   learners=learner_summary(self.suite, cell.model), defense=cell.defense,
                   defense_name=defense.plugin if defense else NO_DEFENSE, attack=cell.attack,
                   attack_name=attack.plugin, backend=attack.backend or "", attack_kind=spec.kind,
                   norm=spec.norm, attack_params=json.dumps(attack.options, sort_keys=True), eps=cell.eps,
                   seed=cell.seed, config_hash=config_hash(self.suite.cell_config(cell)),
                   device=str(self.device), **defaults)

    def _cell(self, cell: Cell, module, model_hash: str, evaluator: Evaluator, defended: dict) -> Outcome:
        try:
            if cell.defense not in defended:  # fitted, wrapped and measured once per model
                wrapped = self._wrap(module, cell.defense, evaluator)
                defended[cell.defense] = (wrapped, evaluator.clean(wrapped))
            wrapped, clean = defended[cell.defense]
            attack = self.suite.attacks[cell.attack]
            spec = self.registry.attack(attack.plugin, attack.backend)
            start = time.perf_counter()
            robust, gap = clean.correct, NAN
            if cell.eps > 0:
                options = dict(attack.options)
                _seed_host_rngs(cell.seed)
                robust = evaluator.robust(wrapped, spec.build(wrapped, cell.eps, options), spec, cell.eps,
                                          cell.seed, clean.correct)
                gap = self._convergence_gap(wrapped, spec, options, cell, evaluator, clean, robust)
            row = self._base_row(cell, n=evaluator.n, clean_acc=float(clean.correct.float().mean()),
                                 robust_acc=float(robust.float().mean()), zero_grad_share=clean.zero_share,
                                 nonfinite_grad_share=clean.nonfinite_share, converged_gap=gap,
                                 seconds=time.perf_counter() - start, model_hash=model_hash,
                                 T=float(getattr(wrapped, "temperature", 1.0)))
            return Outcome(asdict(row), _examples(clean.correct, robust))
        except Exception as exc:  # one failing attack or defense plugin costs one row
            self.progress.log(f"[red]cell {cell} failed: {one_line(exc)}[/red]")
            return self.failed(cell, one_line(exc), model_hash)

    def _convergence_gap(self, wrapped, spec, options, cell, evaluator, clean, robust) -> float:
        """Robust accuracy with the attack's iterations minus with twice as many, on the first
        ``convergence_images`` images: positive means the attack had not converged."""
        images = self.suite.convergence_images
        if not spec.steps_option or images == 0 or spec.steps_option not in options:
            return NAN
        longer = {**options, spec.steps_option: options[spec.steps_option] * 2}
        _seed_host_rngs(cell.seed)
        again = evaluator.robust(wrapped, spec.build(wrapped, cell.eps, longer), spec, cell.eps, cell.seed,
                                 clean.correct, limit=images)
        return float(robust[: len(again)].float().mean() - again.float().mean())

    def _wrap(self, module, defense_key: str, evaluator: Evaluator):
        if defense_key == NO_DEFENSE:
            return module
        component = self.suite.defenses[defense_key]
        spec = self.registry.get("defenses", component.plugin)
        options = dict(component.options)
        if spec.fit is not None:  # data-dependent options, e.g. T = "auto", on the clean test images
            options = spec.fit(module, options, evaluator.x, evaluator.y)
        return spec.wrap(module, options).to(self.device).eval()


def _examples(correct, robust) -> dict[str, Any]:
    import torch

    return {"correct": correct.to("cpu", torch.uint8), "robust": robust.to("cpu", torch.uint8)}


def _seed_host_rngs(seed: int) -> None:
    """Seed Python's and numpy's global generators before an attack (ART draws its random starts from
    numpy), so a cell's result does not depend on what ran before it in the process."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)


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


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, HarnessError):
        return message
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {message}{where}"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"harness": __version__}
    for dist in ("torch", "torchattacks", "adversarial-robustness-toolbox", "numpy"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found
