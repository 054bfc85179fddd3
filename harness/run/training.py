"""Trained models for a suite's cells: from the run directory's ``models/``, else the shared model
cache, else the model's learner stages run in order (parameter selection, freezing) and the result
stored in both, with a JSON sidecar saying how it was made.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from harness import __version__
from harness.api import TrainContext
from harness.errors import HarnessError
from harness.kit.threads import math_settings
from harness.registry import Registry
from harness.results.rundir import RunDir
from harness.run.cache import ModelCache, model_identity
from harness.run.evaluator import Evaluator
from harness.run.modelstore import load_model, save_model
from harness.suite.load import Suite


@dataclass
class Data:
    """One dataset's splits, cut to the suite's sizes, on the device."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


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


def stage_where(suite: Suite, key: str, index: int) -> str:
    """Where a stage's parameter patterns are written, for messages."""
    return f"{suite.path}: models.{key}.stages.{index}.params"


def build_model(suite: Suite, registry: Registry, dataset: str, key: str):
    """Model ``key`` as its plugin builds it for ``dataset``, with every stage's parameter patterns
    checked against it (one line naming the stage for a pattern that matches nothing): the runner's
    preflight and the first step of training."""
    component = suite.models[key]
    module = registry.models.get(component.plugin).build(component.options, registry.datasets.get(dataset).info)
    for index, stage in enumerate(component.stages):
        select_params(module, stage.params, stage_where(suite, key, index))
    return module


def learner_summary(suite: Suite, key: str) -> str:
    """The stages as one line; "pretrained" for a model that has none (harness.api.Model.pretrained)."""
    return " > ".join(f"{s.learner}[{','.join(s.params)}{',frozen' if s.freeze else ''}]"
                      for s in suite.models[key].stages) or "pretrained"


def versions(registry: Registry | None = None) -> dict[str, str]:
    """Versions of the harness, torch, numpy and the distributions that registered the attacks
    (what a result depends on beyond the suite)."""
    import importlib.metadata as md

    found = {"harness": __version__}
    names = ["torch", "numpy"]
    if registry is not None:  # the libraries the attacks declare, and third-party attack plugins
        from harness.plugins import DISTRIBUTION

        attacks = list(registry.attacks.entries())
        names += sorted({e.distribution for e in attacks if e.distribution not in (None, DISTRIBUTION)}
                        | {d for e in attacks for d in e.obj.requires})
    for dist in names:
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


class Training:
    """Finds or trains the models of one suite into one run directory. ``load_data(name)`` gives a
    dataset's :class:`Data`."""

    def __init__(self, suite: Suite, registry: Registry, run_dir: RunDir, device,
                 cache: ModelCache | None, progress, load_data: Callable[[str], Data]) -> None:
        self.suite, self.registry, self.run_dir, self.device = suite, registry, run_dir, device
        self.cache, self.progress, self.load_data = cache, progress, load_data

    def obtain(self, dataset: str, key: str, seed: int):
        """(module, model_hash, a line for the user): stored, cached or trained now."""
        config, model_hash = model_identity(self.suite, self.registry, dataset, key, seed)
        stored = self.stored(key, seed, model_hash, required=False)
        if stored is not None:
            module, where = stored
            return module, model_hash, f"model {key} on {dataset} (seed {seed}): reusing {where}"
        module, message = self.train_and_store(dataset, key, seed, config, model_hash)
        return module, model_hash, message

    def stored(self, key: str, seed: int, model_hash: str, required: bool = True):
        """(module, where it came from) from ``OUT/models`` or the cache (copied to ``OUT/models``)."""
        path = self.run_dir.model(key, seed, model_hash)
        if path.exists() and path.with_suffix(".json").exists():
            where = str(path)
        elif self.cache is not None and self.cache.fetch(model_hash, path):
            where = f"{self.cache.weights(model_hash)} (model cache)"
        elif required:
            raise HarnessError(f"model {key} (seed {seed}, hash {model_hash}) is neither in {path.parent} nor in "
                               f"the model cache ({self.cache.root if self.cache else 'off'}), where its training "
                               f"stored it (removed since?); rerun the same command to train it again")
        else:
            return None
        return load_model(path, self.registry, self.device)[0], where

    def train_and_store(self, dataset: str, key: str, seed: int, config: dict, model_hash: str):
        data = self.load_data(dataset)
        module, history, seconds = self.train(dataset, key, seed, data)
        accuracy = Evaluator(data.x_test, data.y_test, self.suite.batch_size).clean_accuracy(module)
        component = self.suite.models[key]
        info = self.registry.datasets.get(dataset).info
        sidecar = {"format": 1, "model": component.plugin, "model_key": key, "options": component.options,
                   "info": asdict(info), "config": config, "model_hash": model_hash,
                   "stages": history, "train_seconds": seconds, "test_accuracy": accuracy,
                   "test_size": len(data.y_test), "versions": versions(self.registry), "device": str(self.device),
                   "math": math_settings()}
        path = self.run_dir.model(key, seed, model_hash)
        save_model(module, self.registry.models.get(component.plugin), path, sidecar)
        if self.cache is not None and component.stages:  # a pretrained model's files are its own cache
            self.cache.store(model_hash, path)
        done = f"trained in {seconds:.1f}s" if component.stages else "loaded (pretrained, no learner stages)"
        return module, (f"model {key} on {dataset} (seed {seed}): {done}, "
                        f"test accuracy {100 * accuracy:.2f}% on {len(data.y_test)} images")

    def train(self, dataset: str, key: str, seed: int, data: Data):
        """(module in eval mode, per-stage history, seconds): the model built and its stages run."""
        import torch

        component = self.suite.models[key]
        torch.manual_seed(seed)
        info = self.registry.datasets.get(dataset).info
        module = build_model(self.suite, self.registry, dataset, key).to(self.device)
        frozen: set[str] = set()
        history = []
        start = time.perf_counter()
        for index, stage in enumerate(component.stages):
            where = stage_where(self.suite, key, index)
            params = {n: p for n, p in select_params(module, stage.params, where).items() if n not in frozen}
            if not params:
                raise HarnessError(f"{where}: every matching parameter was frozen by an earlier stage")
            for name, param in module.named_parameters():
                param.requires_grad_(name in params)
            learner = self.registry.learners.get(stage.learner)
            torch.manual_seed(seed * 1000 + index)
            module.train()

            def progress(total, description=None, _l=stage.learner):
                return self.progress.task(description or f"train {key} ({dataset}) seed {seed}: {_l}", total)

            state_dir = None if self.cache is None else self.cache.root / "learner-state" / stage.learner
            ctx = TrainContext(model=module, params=params, options={**learner.optional, **stage.options},
                               x=data.x_train, y=data.y_train, x_test=data.x_test, y_test=data.y_test,
                               device=self.device, seed=seed, progress=progress, info=info, state_dir=state_dir)
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
