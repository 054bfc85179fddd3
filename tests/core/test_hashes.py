"""Cell and model hashes are what resume and the model cache key on: the committed runs under results/
must resume with nothing to redo and cached models must be found again, whatever the core's layout.
These tests recompute both from the committed runs and pin two of them as literals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.results.diagnostics import WORST
from harness.run.cache import model_identity
from harness.suite.load import config_hash, load_suite

RESULTS = Path(__file__).resolve().parents[2] / "results"
RUNS = sorted(p.parent for p in RESULTS.glob("*/run.json"))


def test_the_committed_runs_are_there():
    assert {p.name for p in RUNS} >= {"thesis-cpu", "thesis-strong", "sweep-400"}


@pytest.mark.parametrize("run", RUNS, ids=[p.name for p in RUNS])
def test_every_cell_of_a_committed_run_hashes_as_recorded(run, registry):
    suite = load_suite(run / "suite.toml", registry)
    recorded = json.loads((run / "run.json").read_text())["cells"]
    computed = [{"dataset": c.dataset, "model": c.model, "defense": c.defense, "attack": c.attack, "eps": c.eps,
                 "seed": c.seed, "config_hash": config_hash(suite.cell_config(c))} for c in suite.cells]
    assert computed == recorded
    rows = pd.read_csv(run / "results.csv", dtype={"config_hash": str})
    ok = set(rows.loc[(rows["status"] == "ok") & (rows["attack"] != WORST), "config_hash"])
    assert ok and ok <= {c["config_hash"] for c in computed}  # a resumed run finds every one of them done


@pytest.mark.parametrize("run", RUNS, ids=[p.name for p in RUNS])
def test_every_committed_model_hashes_as_its_file_name(run, registry):
    suite = load_suite(run / "suite.toml", registry)
    sidecars = sorted((run / "models").glob("*.json"))
    assert sidecars
    for sidecar in sidecars:
        stored = json.loads(sidecar.read_text())
        config, _ = model_identity(suite, registry, stored["config"]["dataset"], stored["model_key"],
                                   stored["config"]["seed"])
        config["versions"] = stored["config"]["versions"]  # the versions installed when it was trained
        assert json.loads(json.dumps(config, default=str)) == stored["config"], sidecar.name
        assert config_hash(config) == stored["model_hash"] == sidecar.stem.rsplit("-", 1)[1]


def test_one_cell_and_one_model_hash_are_pinned(registry):
    suite = load_suite(RESULTS / "thesis-cpu" / "suite.toml", registry)
    cell = next(c for c in suite.cells if (c.model, c.defense, c.attack, c.eps) == ("bio", "T1", "fgsm", 0.15))
    assert config_hash(suite.cell_config(cell)) == "9662ef6872bd"
    config, _ = model_identity(suite, registry, "mnist", "bio", 0)
    config["versions"] = {"harness": "0.1.0", "robustness-harness": "0.1.0", "torch": "2.14.1"}
    assert config_hash(config) == "08ee9cc9ab06"
