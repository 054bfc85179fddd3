"""Math threads (harness/threads.py): how many a process uses, that a bad setting is one line, and
that training does not depend on the number: the same tiny suite trained with 1 and with 2 threads
gives the same weights, bit for bit, and the same rows."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from harness.cli import cli
from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.results import TIMING_COLUMNS
from harness.runner import Runner
from harness.suite import load_suite
from harness.testing import assert_one_line_error
from harness.threads import ENV, MATH_ENV, choose_threads, usable_cores, use_threads


def test_explicit_then_environment_then_cores(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert choose_threads(3) == 3
    assert choose_threads(0, cores=1.5) == 1                   # a Ray task that asked for 1.5 CPUs
    assert choose_threads(0, cores=0.25) == 1
    assert choose_threads() == usable_cores() == len(os.sched_getaffinity(0))
    assert choose_threads(current=1) == 1                      # a process that chose fewer keeps them
    monkeypatch.setenv(ENV, "5")
    assert choose_threads() == choose_threads(cores=2) == 5 and choose_threads(2) == 2


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_thread_setting_is_one_line(monkeypatch, tiny_suite, tmp_path, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(HarnessError, match=f"\\${ENV}='{value}': expected a positive integer"):
        choose_threads()
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["run", str(tiny_suite), "--out", str(out)])
    assert_one_line_error(result, f"${ENV}='{value}'", "expected a positive integer")
    monkeypatch.delenv(ENV)
    for executor in ("local", "ray"):
        result = CliRunner().invoke(cli, ["run", str(tiny_suite), "--out", str(out), "--executor", executor,
                                          "--executor-option", "threads=-1"])
        if executor == "ray" and "Ray is not installed" in result.output:
            continue
        assert_one_line_error(result, "threads", "expected", "got -1")
    result = CliRunner().invoke(cli, ["run", str(tiny_suite), "--out", str(out), "--executor-option", "threads=two"])
    assert_one_line_error(result, "--executor-option threads", "expected an integer")
    assert not out.exists()


def test_the_math_environment_is_set_before_torch():
    # harness/__init__.py sets it; torch's MKL reads MKL_CBWR once, when it starts
    assert all(os.environ.get(name) for name in MATH_ENV)


def test_training_gives_the_same_model_with_1_and_2_threads(tiny_suite, tmp_path, mnist_root):
    """Without MKL's strict reproducible mode the Hebbian layer's float32 products differ in their
    last bits between 1 and 2 threads, and the trained weights differ."""
    registry = load_registry()
    suite = load_suite(tiny_suite, registry)
    before = torch.get_num_threads()
    tables, weights = {}, {}
    try:
        for threads in (1, 2):
            out = tmp_path / f"t{threads}"
            frame = Runner(suite, registry, out, mnist_root, torch.device("cpu"), cache=None,
                           executor="local", executor_options={"threads": threads}).run()
            assert torch.get_num_threads() == threads
            tables[threads] = frame.drop(columns=TIMING_COLUMNS).sort_values("config_hash").reset_index(drop=True)
            weights[threads] = {path.name: load_file(path) for path in sorted((out / "models").glob("*.safetensors"))}
            for sidecar in (out / "models").glob("*.json"):  # how each model was computed is on record
                assert json.loads(sidecar.read_text())["math"] == {"threads": threads, **{
                    name: os.environ[name] for name in MATH_ENV}}
    finally:
        use_threads(before)
    assert len(weights[1]) == 2 and weights[1].keys() == weights[2].keys()
    for name, tensors in weights[1].items():
        assert all(torch.equal(tensors[key], weights[2][name][key]) for key in tensors), name
    pd.testing.assert_frame_equal(tables[1], tables[2])
