"""Executors: the built-in local and ray ones give the same table, a third-party executor written
against the hook works, and the runner holds executors to their contract.

One tiny suite (a 32-unit net, 1 epoch on 1 000 MNIST images, 100 test images, 8 cells over two
seeds), one thread per process so that results are bit-identical across processes."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from harness import hookimpl
from harness.api import Executor
from harness.cli import cli
from harness.errors import HarnessError, PluginError
from harness.plugins import load_registry
from harness.results.table import TIMING_COLUMNS, read_results
from harness.run.cache import ModelCache
from harness.run.runner import Runner
from harness.suite.load import load_suite
from harness.testing import assert_one_line_error
from suite_builder import changed, one_net, torchattacks

SUITE = changed(one_net(convergence_images=20, attacks={"pgd": torchattacks("pgd", steps=3)}, eps=(0.0, 0.1)),
                {"grid.seed": [0, 1]})
CELLS = 8


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, one_torch_thread):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by Ray's worker processes


@pytest.fixture
def suite_file(write_suite) -> Path:
    return write_suite(SUITE)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=TIMING_COLUMNS).sort_values("config_hash").reset_index(drop=True)


def run(registry, suite_file, out, root, executor="local", cache=None, **options):
    suite = load_suite(suite_file, registry)
    return Runner(suite, registry, out, root, torch.device("cpu"), cache=cache, executor=executor,
                  executor_options=options).run()


@pytest.fixture
def local_table(suite_file, tmp_path, mnist_root) -> pd.DataFrame:
    frame = run(load_registry(), suite_file, tmp_path / "local", mnist_root, cache=ModelCache(tmp_path / "c1"))
    assert len(frame[frame["attack"] != "worst-case"]) == CELLS and (frame["status"] == "ok").all()
    return frame


class Backwards:
    """A third-party executor in the shape a cluster executor takes: train each model with
    ``worker.train``, then run each cell with ``worker.run_cell``, here in reverse order."""

    __name__ = "backwards_plugin"

    @hookimpl
    def harness_register_executors(self, register):
        def run_backwards(plan, options):
            for group in reversed(plan.groups):
                trained = plan.worker.train(group)
                assert not trained.error, trained.error
                plan.log(trained.message)
                for cell in reversed(group.cells):
                    if plan.stopping():
                        return
                    yield plan.worker.run_cell(cell, trained.model_hash)
        register(Executor(name="backwards", run=run_backwards, description="cells in reverse order"))

        def run_twice(plan, options):
            group = plan.groups[0]
            outcome = plan.worker.failed(group.cells[0], "not run")
            yield outcome
            yield outcome
        register(Executor(name="twice", run=run_twice, description="breaks the contract"))


def test_a_third_party_executor_gives_the_local_table(local_table, suite_file, tmp_path, mnist_root):
    registry = load_registry(extra=[Backwards()])
    frame = run(registry, suite_file, tmp_path / "backwards", mnist_root, "backwards", ModelCache(tmp_path / "c2"))
    pd.testing.assert_frame_equal(comparable(frame), comparable(local_table))
    with pytest.raises(PluginError, match="executor 'twice' returned a row for a cell it was not given or twice"):
        run(registry, suite_file, tmp_path / "twice", mnist_root, "twice")
    assert len(read_results(tmp_path / "twice")) == 1  # what came before the breach is kept


RAY_MISSING = importlib.util.find_spec("ray") is None
NEEDS_RAY = pytest.mark.skipif(RAY_MISSING, reason="Ray is optional and not installed: "
                               "pip install 'robustness-harness[ray]' (the test extra has it)")


@pytest.mark.slow
@NEEDS_RAY
def test_the_ray_executor_gives_the_local_table(local_table, suite_file, tmp_path, mnist_root):
    """`harness run --executor ray` with no address starts a local Ray instance (one CPU). It runs in
    a subprocess: Ray imports requests, which tests/core/test_pipeline.py checks this process never does."""
    out, cache = tmp_path / "ray", tmp_path / "c3"
    env = {**os.environ, "HARNESS_DATA": str(mnist_root), "OMP_NUM_THREADS": "1"}
    env.pop("HARNESS_NO_CACHE", None)
    args = [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--out", str(out), "--device", "cpu",
            "--quiet", "--executor", "ray", "--executor-option", "cpus=1", "--cache-dir", str(cache)]
    # not from the checkout: Ray puts the driver's directory first on its tasks' sys.path
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # models were trained by Ray tasks (fresh cache), each the local run's, tensor for tensor
    pd.testing.assert_frame_equal(comparable(read_results(out)), comparable(local_table))
    from safetensors.torch import load_file

    for model_hash in set(local_table["model_hash"]):
        by_ray = load_file(ModelCache(cache).weights(model_hash))
        by_local = load_file(ModelCache(tmp_path / "c1").weights(model_hash))
        assert by_ray.keys() == by_local.keys() and all(torch.equal(by_ray[k], by_local[k]) for k in by_ray)
        assert len(list((out / "models").glob(f"bp-seed*-{model_hash}.json"))) == 1  # OUT/models too
    for sidecar in (out / "models").glob("*.json"):  # Ray's task processes set the math settings before torch
        assert json.loads(sidecar.read_text())["math"]["before_torch"] is True
    assert json.loads((out / "run.json").read_text())["runs"][-1]["executor"] == "ray"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_bad_executor_choices_are_one_line_errors(suite_file, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "rey"),
                   "--executor rey", "unknown executor", "did you mean 'ray'")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor-option", "address=auto"),
                   "--executor-option address", "unknown parameter 'address' for executor 'local'")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--address", "auto"),
                   "--address", "--executor-option address=auto")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "ray", "--executor-option", "num_gpu=1"),
                   "num_gpu", "did you mean 'num_gpus'")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "ray", "--executor-option", "cpus=two"),
                   "--executor-option cpus", "expected an integer")
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "ray", "--executor-option", "cpus"),
                   "expected KEY=VALUE")
    if not RAY_MISSING:
        with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
            probe.bind(("127.0.0.1", 0))
            closed = f"127.0.0.1:{probe.getsockname()[1]}"
        assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "ray",
                                     "--executor-option", f"address={closed}"),
                       f"--executor-option address={closed}", "nothing answers there", "ray start --head")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert_one_line_error(invoke("run", str(suite_file), "--out", out, "--executor", "ray"),
                   "Ray is not installed", "pip install 'robustness-harness[ray]'")
    assert not Path(out).exists()  # nothing was written


@NEEDS_RAY
def test_ray_needs_the_model_cache(suite_file, tmp_path, mnist_root):
    with pytest.raises(HarnessError, match="needs the model cache"):
        run(load_registry(), suite_file, tmp_path / "out", mnist_root, "ray", cache=None)


def test_executors_are_registered_like_other_plugins(registry):
    entries = {e.key: e for e in registry.executors.entries()}
    assert {key: e.plugin for key, e in entries.items()} == {"local": "local", "ray": "ray"}
    assert all(isinstance(e.obj, Executor) and e.obj.description for e in entries.values())
    # registering the ray executor does not import Ray: only running it does
    code = "import sys; from harness.plugins import load_registry; load_registry(); print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_this_process_never_imported_ray():
    """Ray (and the requests it imports) stay out of the test process: see the Ray test's docstring."""
    assert "ray" not in sys.modules


def test_the_default_executor_is_the_one_that_says_so(harness_plugin, monkeypatch):
    """The core names no executor: `--executor` defaults to the record with default=True."""
    from harness.run.executor import pick_executor

    def default_executor(registry):
        return pick_executor(registry).name

    assert default_executor(load_registry()) == "local"
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "local")
    with pytest.raises(HarnessError, match=r"no registered executor is the default \(registered: ray\)"):
        default_executor(load_registry())
    monkeypatch.delenv("HARNESS_BLOCK_PLUGINS")

    class Rival:
        @hookimpl
        def harness_register_executors(self, register):
            register(Executor(name="rival", run=lambda plan, options: iter(()), default=True))
    harness_plugin(Rival())
    with pytest.raises(HarnessError, match="executors local, rival each declare themselves the default"):
        default_executor(load_registry())
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "local")
    assert default_executor(load_registry()) == "rival"
