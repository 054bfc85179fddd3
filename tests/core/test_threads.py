"""Math threads (harness/kit/threads.py): how many a process uses, that a bad setting is one line, and
that training does not depend on the number: the same tiny suite trained with 1 and with 2 threads
gives the same weights, bit for bit, and the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from harness.cli import cli
from harness.errors import HarnessError
from harness.kit import threads
from harness.kit.threads import ENV, MATH_ENV, choose_threads, set_math_environment, usable_cores, use_threads
from harness.plugins import load_registry
from harness.results.table import TIMING_COLUMNS
from harness.run.runner import Runner
from harness.suite.load import load_suite
from harness.testing import assert_one_line_error


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


def test_a_lower_count_chosen_once_does_not_stick(monkeypatch):
    """A run with threads=1 lowers torch's count; a later run in the same process that leaves the
    choice to the cores gets them again, not the 1 the earlier run left behind."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_initial_threads", None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert use_threads() == 2 and use_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_threads() == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)  # a caller's own lower count, before harness first set one: kept
        monkeypatch.setattr(threads, "_initial_threads", None)
        assert use_threads() == 1 and use_threads(2) == 2 and use_threads() == 1
    finally:
        torch.set_num_threads(before)


def python(program: str, **env: str) -> list[str]:
    """The lines a fresh Python prints, its environment without the math settings (plus ``env``)."""
    clean = {k: v for k, v in os.environ.items() if k not in MATH_ENV} | env
    done = subprocess.run([sys.executable, "-c", program], env=clean, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


@pytest.mark.slow
def test_the_harness_program_sets_the_math_environment_before_torch():
    """Importing the package (also as another project's pytest plugin) sets nothing; the `harness`
    program sets the settings before any command imports torch, and a model's sidecar says so."""
    assert python("""
import os, sys
import harness, harness.testing, harness.run.runner, harness.suite.load
from harness.kit.threads import MATH_ENV
print(any(name in os.environ for name in MATH_ENV))
import harness.cli
print("torch" in sys.modules, {name: os.environ[name] for name in MATH_ENV} == MATH_ENV)
import torch
from harness.kit.threads import math_settings
print(math_settings()["before_torch"])
""") == ["False", "False", "True", "True"]


@pytest.mark.slow
def test_settings_made_after_torch_started_are_recorded_as_such():
    """A program that imported torch first (e.g. before calling harness.eval_model): the settings go
    into the environment for the processes an executor starts, the user's own value is kept, and a
    sidecar does not claim torch computed with them."""
    assert python("""
import os
import torch
from harness.kit.threads import math_settings, set_math_environment
print(set_math_environment(), math_settings()["before_torch"], os.environ["MKL_CBWR"], os.environ["OMP_WAIT_POLICY"])
""", OMP_WAIT_POLICY="ACTIVE") == ["False", "False", "AUTO,STRICT", "ACTIVE"]


def test_training_gives_the_same_model_with_1_and_2_threads(tiny_suite, tmp_path, mnist_root):
    """Without MKL's strict reproducible mode the Hebbian layer's float32 products differ in their
    last bits between 1 and 2 threads, and the trained weights differ."""
    registry = load_registry()
    suite = load_suite(tiny_suite, registry)
    before = torch.get_num_threads()
    tables, weights = {}, {}
    try:
        for count in (1, 2):
            out = tmp_path / f"t{count}"
            frame = Runner(suite, registry, out, mnist_root, torch.device("cpu"), cache=None,
                           executor="local", executor_options={"threads": count}).run()
            assert torch.get_num_threads() == count
            tables[count] = frame.drop(columns=TIMING_COLUMNS).sort_values("config_hash").reset_index(drop=True)
            weights[count] = {path.name: load_file(path) for path in sorted((out / "models").glob("*.safetensors"))}
            for sidecar in (out / "models").glob("*.json"):  # how each model was computed is on record
                assert json.loads(sidecar.read_text())["math"] == {"threads": count, **{
                    name: os.environ[name] for name in MATH_ENV}, "before_torch": set_math_environment()}
    finally:
        use_threads(before)
    assert len(weights[1]) == 2 and weights[1].keys() == weights[2].keys()
    for name, tensors in weights[1].items():
        assert all(torch.equal(tensors[key], weights[2][name][key]) for key in tensors), name
    pd.testing.assert_frame_equal(tables[1], tables[2])
