"""Suite -> cells -> executor -> rows. Data flows one way: dataset, trained model (from disk, the
shared model cache, or learner stages), defense-wrapped model, attack, row, table.

The runner owns the run directory. It resolves each cell once into a :class:`harness.run.jobs.Job`
(records, hash, the row's known fields); an executor (``harness.api.Executor``, e.g. ``local`` or
``ray``, picked by :func:`harness.run.executor.pick_executor`) runs the jobs through a
:class:`harness.run.worker.Worker` and hands back one :class:`harness.api.Outcome` per cell, whose
row is appended to the table as it is.
Each trained model is saved once per configuration and seed under ``OUT/models`` (and in the shared
cache, :mod:`harness.run.cache`) and reused by every cell that needs it; ``OUT/results.csv`` is rewritten
atomically after every row, and cells whose ``config_hash`` already has an ``ok`` row there are
skipped, so rerunning a command continues it.

``OUT/run.json`` records what produced the directory (the suite file and its sha256, the grid, package
versions, the device, ``--set`` overrides, and one entry per invocation), next to a copy of the suite
as ``OUT/suite.toml``: the effective suite when overrides or ``harness eval`` made it.
SIGINT (Ctrl-C) stops a run after the cells in progress: they are finished and recorded, then
:class:`RunInterrupted` is raised; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from harness.api import Outcome, Plan
from harness.errors import PluginError
from harness.kit.atomic import replace_atomically
from harness.kit.threads import set_math_environment
from harness.registry import Registry
from harness.results import diagnostics
from harness.results.rundir import SUITE_COPY, RunDir, run_lock
from harness.results.table import Row, read_results, to_frame, write_csv
from harness.run.cache import ModelCache
from harness.run.executor import executor_options as resolve_executor_options, pick_executor
from harness.run.jobs import Job, group_jobs, resolve_jobs
from harness.run.progress import SilentProgress
from harness.run.training import build_model, versions
from harness.run.worker import Worker
from harness.suite.load import Suite


class RunInterrupted(Exception):
    """A run stopped early on SIGINT / KeyboardInterrupt; ``done`` of ``total`` cells have a row."""

    def __init__(self, done: int, total: int, results: Path) -> None:
        super().__init__(f"interrupted: {done} of {total} cells done")
        self.done, self.total, self.results = done, total, results


def suite_path(source: Path, out_dir: Path) -> tuple[str, str]:
    """(path, what it is relative to) of the suite file as ``run.json`` records it, so that the record
    reads the same on another machine: relative to the run directory when the suite lies in it (what
    ``harness eval`` writes), else to the directory the run was started in (the project's root, as
    the command named it: ``suites/quick.toml``) when it lies there, else to the run directory."""
    resolved, run_dir, cwd = source.resolve(), Path(out_dir).resolve(), Path.cwd().resolve()
    if run_dir in resolved.parents:
        return resolved.relative_to(run_dir).as_posix(), "run directory"
    if cwd in resolved.parents:
        return resolved.relative_to(cwd).as_posix(), "working directory"
    return Path(os.path.relpath(resolved, run_dir)).as_posix(), "run directory"


def portable_path(path: Path) -> str:
    """``path`` with the user's home directory written ``~``: a record names no user's home."""
    path, home = Path(path).absolute(), Path.home().absolute()
    return f"~/{path.relative_to(home).as_posix()}" if home in path.parents else str(path)


class Runner:
    """Runs a suite into ``out_dir``. ``cache``: the shared model cache (None: none, the default
    here; ``harness run`` uses the user's). ``executor``: a registered executor's name (None: the
    default one); ``executor_options``: its options, over its defaults."""

    def __init__(self, suite: Suite, registry: Registry, out_dir: Path, data_root: Path, device,
                 progress=None, cache: ModelCache | None = None, executor: str | None = None,
                 executor_options: dict[str, Any] | None = None) -> None:
        # too late for torch in this process when it is already imported (the sidecars then say so),
        # but in place for the processes an executor starts (harness.kit.threads)
        set_math_environment()
        self.suite, self.registry, self.out_dir = suite, registry, Path(out_dir)
        self.progress = progress or SilentProgress()
        self.executor = pick_executor(registry, executor)
        self.executor_options = resolve_executor_options(self.executor, executor_options)
        self.worker = Worker(suite, registry, self.out_dir, data_root, device, cache, self.progress)
        self.device, self.cache = self.worker.device, cache
        self.run_dir = RunDir(self.out_dir)
        self.results_path = self.run_dir.results
        self._stop = False  # set by SIGINT: stop before the next cell
        self._checked = False  # preflight done

    # -- checks before any work --------------------------------------------------------------
    def preflight(self) -> None:
        """Build every model once per dataset (cheap), as training will, to check each stage's
        parameter patterns; once per runner (``harness eval`` calls it before printing anything)."""
        if self._checked:
            return
        for dataset, key in dict.fromkeys((c.dataset, c.model) for c in self.suite.cells):
            build_model(self.suite, self.registry, dataset, key)
        self._checked = True

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        """Run every cell not yet in the table. On SIGINT, finish the cells in progress, leave a
        valid table and raise :class:`RunInterrupted`."""
        self._stop = False
        installed, previous = False, None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            installed = True
        try:
            self.preflight()
            with run_lock(self.run_dir):
                return self._run()
        finally:
            if installed:
                signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now, the cells in progress are lost
            raise KeyboardInterrupt
        self._stop = True
        self.progress.log("[yellow]interrupt: stopping after the current cell (Ctrl-C again to stop now)[/yellow]")

    def _run(self) -> pd.DataFrame:
        self.run_dir.remove_temporaries()
        rows = self._previous_rows()
        done = {r.config_hash for r in rows if r.status == "ok"}
        jobs = resolve_jobs(self.suite, self.registry)
        todo = [j for j in jobs if j.config_hash not in done]
        self._record_run(jobs, todo)
        if len(todo) < len(self.suite.cells):
            self.progress.log(f"{len(self.suite.cells) - len(todo)} cell(s) already in {self.results_path}; "
                              f"running the other {len(todo)}")
        if not todo:  # a run stopped during its last cell left its rows without checks and worst cases
            annotated = not rows or any(r.attack == diagnostics.WORST for r in rows)
            return read_results(self.out_dir) if annotated else self._write(rows, annotate=True)
        # earlier failures of these cells are replaced; worst-case rows are recomputed at the end
        retry = {j.config_hash for j in todo}
        rows = [r for r in rows if r.config_hash not in retry and r.attack != diagnostics.WORST]
        try:
            self._execute(todo, retry, rows)
        except KeyboardInterrupt:  # a second Ctrl-C (or no handler): the table holds every finished cell
            self._stop = True
        if self._stop:
            finished = {r.config_hash for r in rows}
            if rows:  # the finished cells get their checks and worst cases; a resumed run recomputes them
                try:
                    self._write(rows, annotate=True)
                except KeyboardInterrupt:  # another Ctrl-C: the table as written after the last cell stays
                    pass
            raise RunInterrupted(sum(j.config_hash in finished for j in jobs), len(self.suite.cells),
                                 self.results_path)
        return self._write(rows, annotate=True)

    def _execute(self, todo: list[Job], expected: set[str], rows: list[Row]) -> None:
        """Hand the jobs to the executor and record each outcome as it arrives."""
        plan = Plan(groups=group_jobs(todo), worker=self.worker, stopping=lambda: self._stop,
                    log=self.progress.log)
        advance = self.progress.task("cells", len(todo))
        outcomes = self.executor.run(plan, dict(self.executor_options))
        try:
            for outcome in outcomes:
                self._record(outcome, expected, rows)
                row = outcome.row
                advance(last=f"{row.model}/{row.defense}/{row.attack}/eps={row.eps:g}")
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:  # a generator: its finally blocks cancel what still runs
                close()
        if expected and not self._stop:  # the rows received are kept; a rerun runs the others
            raise PluginError(f"executor '{self.executor.name}' finished without the rows of {len(expected)} "
                              f"cell(s); rerun the same command to run them")

    def _record(self, outcome: Outcome, expected: set[str], rows: list[Row]) -> None:
        """Per-image results first, then the row: a row in the table always has its examples."""
        digest = outcome.row.config_hash
        if digest not in expected:
            raise PluginError(f"executor '{self.executor.name}' returned a row for a cell it was not given "
                              f"or twice (config_hash {digest})")
        expected.discard(digest)
        if outcome.examples is not None:
            self._save_examples(digest, outcome.examples)
        rows.append(outcome.row)
        self._write(rows)

    def _record_run(self, jobs: list[Job], todo: list[Job]) -> None:
        """OUT/run.json and OUT/suite.toml, both atomically; earlier invocations stay in "runs"."""
        source = Path(self.suite.path)
        try:  # the effective suite when --set or harness eval made it, else the file as it is
            text: bytes | None = self.suite.source.encode() if self.suite.source is not None else source.read_bytes()
        except OSError:  # a Suite built in code, or a file removed since it was loaded
            text = None
        digest = hashlib.sha256(text).hexdigest() if text is not None else None
        path = self.run_dir.record
        history: list[Any] = []
        if path.exists():
            try:
                history = list(json.loads(path.read_text()).get("runs", []))
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                self.progress.log(f"[yellow]{path}: unreadable ({exc}); starting a new history[/yellow]")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        history.append({"started": now, "suite_sha256": digest, "device": str(self.device),
                        "executor": self.executor.name,
                        "model_cache": portable_path(self.cache.root) if self.cache else None,
                        "cells_todo": len(todo), "todo": [j.config_hash for j in todo],
                        "overrides": list(self.suite.overrides)})
        path_text, base = suite_path(source, self.out_dir)
        record = {"format": 1, "suite": {"name": self.suite.name, "path": path_text, "relative_to": base,
                                         "sha256": digest, "copy": SUITE_COPY if text is not None else None,
                                         "overrides": list(self.suite.overrides)},
                  "data": {"train_size": self.suite.train_size, "test_size": self.suite.test_size,
                           "test_subset": self.suite.test_subset and self.suite.test_subset.config()},
                  "cells": [{**asdict(j.cell), "config_hash": j.config_hash} for j in jobs],
                  "versions": versions(self.registry), "device": str(self.device), "runs": history}
        if text is not None:
            replace_atomically(self.run_dir.suite_copy, lambda tmp: Path(tmp).write_bytes(text))
        body = json.dumps(record, indent=2, default=str) + "\n"
        replace_atomically(path, lambda tmp: Path(tmp).write_text(body))

    def _previous_rows(self) -> list[Row]:
        if not self.results_path.exists():
            return []
        return [Row(**r) for r in read_results(self.out_dir).to_dict("records")]

    def _write(self, rows: list[Row], annotate: bool = False) -> pd.DataFrame:
        """Rewrite the table; at the end of a run, with the masking checks and worst-case rows."""
        frame = to_frame(rows)
        if annotate:
            frame = diagnostics.annotate(frame, self.run_dir)
        write_csv(frame, self.results_path)
        return read_results(self.out_dir) if annotate else frame  # exactly what is on disk

    def _save_examples(self, digest: str, tensors: dict[str, Any]) -> None:
        """Per-image outcomes, for worst-case accuracy over attacks (harness/results/diagnostics.py)."""
        from safetensors.torch import save_file

        path = self.run_dir.cell_examples(digest)
        replace_atomically(path, lambda tmp: save_file(tensors, tmp))
