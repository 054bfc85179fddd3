"""Suite -> cells -> rows. Data flows one way: dataset, trained model (from disk or learner stages),
defense-wrapped model, attack, row, table.

Each trained model is saved once per configuration and seed under ``OUT/models`` and reused by every
cell that needs it; ``OUT/results.csv`` is rewritten atomically after every row, and cells whose
``config_hash`` already has an ``ok`` row there are skipped, so rerunning a command continues it.

``OUT/run.json`` records what produced the directory (the suite file and its sha256, the grid, package
versions, the device, and one entry per invocation), next to a copy of the suite as ``OUT/suite.toml``.
SIGINT (Ctrl-C) stops a run after the cell in progress: it is finished and recorded, then
:class:`RunInterrupted` is raised; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
import random
import re
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__, diagnostics
from harness.api import TrainContext
from harness.atomic import replace_atomically
from harness.errors import HarnessError
from harness.evaluate import Evaluator
from harness.modelstore import load_model, save_model
from harness.progress import SilentProgress
from harness.registry import Registry
from harness.results import RESULTS_FILE, Row, read_results, to_frame, write_csv
from harness.suite import NO_DEFENSE, Cell, Suite, config_hash

NAN = float("nan")
RUN_FILE = "run.json"
SUITE_COPY = "suite.toml"
# replace_atomically's temporary files (".NAME-XXXXXXXX"), left behind only by a killed process
_TEMPORARY = re.compile(r"^\..+\.(csv|json|safetensors|toml)-[A-Za-z0-9_]+$")


class RunInterrupted(Exception):
    """A run stopped early on SIGINT / KeyboardInterrupt; ``done`` of ``total`` cells have a row."""

    def __init__(self, done: int, total: int, results: Path) -> None:
        super().__init__(f"interrupted: {done} of {total} cells done")
        self.done, self.total, self.results = done, total, results


@dataclass
class Data:
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


def learner_summary(suite: Suite, key: str) -> str:
    return " > ".join(f"{s.learner}[{','.join(s.params)}{',frozen' if s.freeze else ''}]"
                      for s in suite.models[key].stages)


class Runner:
    def __init__(self, suite: Suite, registry: Registry, out_dir: Path, data_root: Path, device,
                 progress=None) -> None:
        self.suite, self.registry, self.out_dir = suite, registry, Path(out_dir)
        self.data_root, self.device = Path(data_root), device
        self.progress = progress or SilentProgress()
        self.results_path = self.out_dir / RESULTS_FILE
        self._data: tuple[str, Data] | None = None  # the one dataset held in memory
        self._stop = False  # set by SIGINT: stop before the next cell

    # -- checks before any work --------------------------------------------------------------
    def info(self, dataset: str):
        return self.registry.get("datasets", dataset).info

    def preflight(self) -> None:
        """Build every model once per dataset (cheap) to check each stage's parameter patterns."""
        for dataset, key in dict.fromkeys((c.dataset, c.model) for c in self.suite.cells):
            component = self.suite.models[key]
            module = self.registry.get("models", component.plugin).build(component.options, self.info(dataset))
            for i, stage in enumerate(component.stages):
                select_params(module, stage.params, f"{self.suite.path}: models.{key}.stages.{i}.params")

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        """Run every cell not yet in the table. On SIGINT, finish the cell in progress, leave a
        valid table and raise :class:`RunInterrupted`."""
        self._stop = False
        installed, previous = False, None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            installed = True
        try:
            return self._run()
        finally:
            if installed:
                signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now, the cell in progress is lost
            raise KeyboardInterrupt
        self._stop = True
        self.progress.log("[yellow]interrupt: stopping after the current cell (Ctrl-C again to stop now)[/yellow]")

    def _run(self) -> pd.DataFrame:
        self.preflight()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        rows = self._previous_rows()
        done = {r["config_hash"] for r in rows if r["status"] == "ok"}
        hashes = {c: config_hash(self.suite.cell_config(c)) for c in self.suite.cells}
        todo = [c for c in self.suite.cells if hashes[c] not in done]
        self._record_run(hashes, todo)
        if len(todo) < len(self.suite.cells):
            self.progress.log(f"{len(self.suite.cells) - len(todo)} cell(s) already in {self.results_path}; "
                              f"running the other {len(todo)}")
        if not todo:
            return read_results(self.out_dir)
        # earlier failures of these cells are replaced; worst-case rows are recomputed at the end
        retry = {hashes[c] for c in todo}
        rows = [r for r in rows if r["config_hash"] not in retry and r["attack"] != diagnostics.WORST]
        try:
            self._cells(todo, rows)
        except KeyboardInterrupt:  # a second Ctrl-C (or no handler): the table holds every finished cell
            self._stop = True
        if self._stop:
            finished = {r["config_hash"] for r in rows}
            raise RunInterrupted(sum(h in finished for h in hashes.values()), len(self.suite.cells),
                                 self.results_path)
        return self._write(rows, annotate=True)

    def _cells(self, todo: list[Cell], rows: list[dict[str, Any]]) -> None:
        import torch

        advance = self.progress.task("cells", len(todo))
        for (dataset, model_key, seed), cells in _group(todo).items():
            if self._stop:
                return
            try:
                data = self._load_data(dataset)
                module, model_hash = self._model(dataset, model_key, seed, data)
            except Exception as exc:  # a failing learner costs its cells, not the suite
                message = _one_line(exc)
                self.progress.log(f"[red]model {model_key} on {dataset} (seed {seed}) failed: {message}[/red]")
                for cell in cells:
                    rows.append(asdict(self._error_row(cell, message)))
                    advance()
                self._write(rows)
                continue
            evaluator, defended = Evaluator(data.x_test, data.y_test, self.suite.batch_size), {}
            for cell in cells:
                if self._stop:
                    return
                rows.append(asdict(self._cell(cell, module, model_hash, evaluator, defended)))
                self._write(rows)
                advance(last=f"{cell.model}/{cell.defense}/{cell.attack}/eps={cell.eps:g}")
            del module
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _remove_temporaries(self) -> None:
        """Temporary files a killed run left next to the files it was replacing."""
        for directory in (self.out_dir, self.out_dir / "models", self.out_dir / "examples"):
            if directory.is_dir():
                for path in directory.iterdir():
                    if _TEMPORARY.match(path.name) and path.is_file():
                        path.unlink(missing_ok=True)

    def _record_run(self, hashes: dict[Cell, str], todo: list[Cell]) -> None:
        """OUT/run.json and OUT/suite.toml, both atomically; earlier invocations stay in "runs"."""
        source = Path(self.suite.path)
        try:
            text: bytes | None = source.read_bytes()
        except OSError:  # a Suite built in code, or a file removed since it was loaded
            text = None
        digest = hashlib.sha256(text).hexdigest() if text is not None else None
        path = self.out_dir / RUN_FILE
        history: list[Any] = []
        if path.exists():
            try:
                history = list(json.loads(path.read_text()).get("runs", []))
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                self.progress.log(f"[yellow]{path}: unreadable ({exc}); starting a new history[/yellow]")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        history.append({"started": now, "suite_sha256": digest, "device": str(self.device),
                        "cells_todo": len(todo), "todo": [hashes[c] for c in todo]})
        record = {"format": 1, "suite": {"name": self.suite.name, "path": str(source.resolve()),
                                         "sha256": digest, "copy": SUITE_COPY if text is not None else None},
                  "cells": [{**asdict(c), "config_hash": hashes[c]} for c in self.suite.cells],
                  "versions": _versions(), "device": str(self.device), "runs": history}
        if text is not None:
            replace_atomically(self.out_dir / SUITE_COPY, lambda tmp: Path(tmp).write_bytes(text))
        body = json.dumps(record, indent=2, default=str) + "\n"
        replace_atomically(path, lambda tmp: Path(tmp).write_text(body))

    def _previous_rows(self) -> list[dict[str, Any]]:
        if not self.results_path.exists():
            return []
        frame = read_results(self.out_dir)
        return frame.to_dict("records")

    def _write(self, rows: list[dict[str, Any]], annotate: bool = False) -> pd.DataFrame:
        """Rewrite the table; at the end of a run, with the masking checks and worst-case rows."""
        frame = to_frame([Row(**r) for r in rows])
        if annotate:
            rescalers = {NO_DEFENSE} | {e.obj.name for e in self.registry.entries("defenses") if e.obj.rescaler}
            frame = diagnostics.annotate(frame, self.out_dir / "examples", rescalers)
        write_csv(frame, self.results_path)
        return read_results(self.out_dir) if annotate else frame  # exactly what is on disk

    def _load_data(self, name: str) -> Data:
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
    def _model(self, dataset: str, key: str, seed: int, data: Data):
        config = self.suite.model_config(dataset, key, seed)
        model_hash = config_hash(config)
        path = self.out_dir / "models" / f"{key}-seed{seed}-{model_hash}.safetensors"
        if path.exists() and path.with_suffix(".json").exists():
            self.progress.log(f"model {key} on {dataset} (seed {seed}): reusing {path}")
            module, _ = load_model(path, self.registry, self.device)
            return module, model_hash
        module, history, seconds = self._train(dataset, key, seed, data)
        accuracy = Evaluator(data.x_test, data.y_test, self.suite.batch_size).clean_accuracy(module)
        self.progress.log(f"model {key} on {dataset} (seed {seed}): trained in {seconds:.1f}s, "
                          f"test accuracy {100 * accuracy:.2f}% on {len(data.y_test)} images")
        component = self.suite.models[key]
        sidecar = {"format": 1, "model": component.plugin, "options": component.options,
                   "info": asdict(self.info(dataset)), "config": config, "model_hash": model_hash,
                   "stages": history, "train_seconds": seconds, "test_accuracy": accuracy,
                   "test_size": len(data.y_test), "versions": _versions(), "device": str(self.device)}
        save_model(module, self.registry.get("models", component.plugin), path, sidecar)
        return module, model_hash

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

    def _error_row(self, cell: Cell, message: str, **values) -> Row:
        return self._base_row(cell, status="error", error=message, **values)

    def _cell(self, cell: Cell, module, model_hash: str, evaluator: Evaluator, defended: dict) -> Row:
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
            self._save_examples(cell, clean.correct, robust)
            return self._base_row(cell, n=evaluator.n, clean_acc=float(clean.correct.float().mean()),
                                  robust_acc=float(robust.float().mean()), zero_grad_share=clean.zero_share,
                                  nonfinite_grad_share=clean.nonfinite_share, converged_gap=gap,
                                  seconds=time.perf_counter() - start, model_hash=model_hash,
                                  T=float(getattr(wrapped, "temperature", 1.0)))
        except Exception as exc:  # one failing attack or defense plugin costs one row
            self.progress.log(f"[red]cell {cell} failed: {_one_line(exc)}[/red]")
            return self._error_row(cell, _one_line(exc), model_hash=model_hash)

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

    def _save_examples(self, cell: Cell, correct, robust) -> None:
        """Per-image outcomes, for worst-case accuracy over attacks (harness/diagnostics.py)."""
        from safetensors.torch import save_file

        path = self.out_dir / "examples" / f"{config_hash(self.suite.cell_config(cell))}.safetensors"
        tensors = {"correct": correct.to("cpu", torch_uint8()), "robust": robust.to("cpu", torch_uint8())}
        replace_atomically(path, lambda tmp: save_file(tensors, tmp))

    def _wrap(self, module, defense_key: str, evaluator: Evaluator):
        if defense_key == NO_DEFENSE:
            return module
        component = self.suite.defenses[defense_key]
        spec = self.registry.get("defenses", component.plugin)
        options = dict(component.options)
        if spec.fit is not None:  # data-dependent options, e.g. T = "auto", on the clean test images
            options = spec.fit(module, options, evaluator.x, evaluator.y)
        return spec.wrap(module, options).to(self.device).eval()


def _seed_host_rngs(seed: int) -> None:
    """Seed Python's and numpy's global generators before an attack (ART draws its random starts from
    numpy), so a cell's result does not depend on what ran before it in the process."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)


def torch_uint8():
    import torch

    return torch.uint8


def _group(cells: list[Cell]) -> dict[tuple[str, str, int], list[Cell]]:
    """Cells by trained model, datasets in order so each is loaded once."""
    groups: dict[tuple[str, str, int], list[Cell]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(c.dataset for c in cells))}
    for cell in sorted(cells, key=lambda c: order[c.dataset]):
        groups.setdefault((cell.dataset, cell.model, cell.seed), []).append(cell)
    return groups


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, HarnessError):
        return message
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {message}{where}"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"harness": __version__}
    for dist in ("torch", "torchattacks", "adversarial-robustness-toolbox", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions
