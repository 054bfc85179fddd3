"""A finished run directory as the reporters read it: its results table, ``run.json``, the suite copy
and the model files of its rows (the layout is :mod:`harness.results.rundir`'s)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST
from harness.results.rundir import RESULTS_FILE, RUN_FILE, RunDir
from harness.results.table import read_results
from harness.run.modelstore import read_sidecar

__all__ = ["RUN_FILE", "ModelFile", "Run", "check_run_dir", "load_run"]


@dataclass
class ModelFile:
    dataset: str
    key: str
    seed: int
    model_hash: str
    path: Path
    sidecar: dict[str, Any]


@dataclass
class Run:
    directory: Path
    frame: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)   # run.json ({} if absent)
    suite: dict[str, Any] = field(default_factory=dict)    # the suite.toml copy ({} if absent)
    models: list[ModelFile] = field(default_factory=list)  # models of the rows that have files

    @property
    def ok(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "ok"]

    @property
    def attacks(self) -> pd.DataFrame:
        """ok rows of real attacks (no worst-case rows)."""
        ok = self.ok
        return ok[ok["attack"] != WORST]

    @property
    def name(self) -> str:
        names = sorted(set(self.frame["suite"])) or [(self.record.get("suite") or {}).get("name", "")]
        return ", ".join(n for n in names if n) or self.directory.name

    @property
    def description(self) -> str:
        return str((self.suite.get("suite") or {}).get("description", ""))

    def date(self) -> str:
        """The date (UTC) of the last invocation that ran this directory, '' if not recorded."""
        runs = self.record.get("runs") or []
        started = str(runs[-1].get("started", "")) if runs and isinstance(runs[-1], dict) else ""
        return started[:10]

    def auto_defenses(self) -> set[str]:
        """Defense keys whose T the suite left to ``auto``."""
        defenses = self.suite.get("defenses") or {}
        return {k for k, v in defenses.items() if isinstance(v, dict) and str(v.get("T", "")).lower() == "auto"}



def check_run_dir(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise HarnessError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise HarnessError(f"{directory}: not a directory; give a run directory (the --out of `harness run`)")
    if not RunDir(directory).results.is_file():
        raise HarnessError(f"{directory}: no {RESULTS_FILE} here; is it the --out of `harness run`?")
    return directory


def load_run(directory: Path | str) -> Run:
    directory = check_run_dir(Path(directory))
    run = Run(directory, read_results(directory))
    try:
        run.record = json.loads(RunDir(directory).record.read_text())
    except (OSError, ValueError):
        run.record = {}
    try:
        run.suite = tomllib.loads(RunDir(directory).suite_copy.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        run.suite = {}
    keys = run.frame[run.frame["model_hash"] != ""][["dataset", "model", "seed", "model_hash"]].drop_duplicates()
    for dataset, key, seed, model_hash in sorted(keys.itertuples(index=False, name=None)):
        try:
            path = RunDir(directory).model(key, seed, model_hash)
        except HarnessError:  # a row naming a file outside the run directory is not followed
            continue
        if path.is_file() and path.with_suffix(".json").is_file():
            try:
                run.models.append(ModelFile(dataset, key, int(seed), model_hash, path, read_sidecar(path)))
            except HarnessError:
                continue
    return run
