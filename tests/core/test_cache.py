"""The cross-run model cache: reuse across run directories, what the key covers, `harness cache`.

Runs are real but tiny: one 32-unit net trained for one epoch on 1 000 MNIST images, 2 cells on
100 test images. Training is counted through a learner that wraps the built-in backprop."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from harness import hookimpl
from harness.api import Learner
from harness.cli import cli
from harness.plugins import load_registry
from harness.results.table import TIMING_COLUMNS, read_results
from harness.run.cache import ModelCache, model_identity
from harness.run.runner import Runner
from harness.suite.load import load_suite
from harness.testing import assert_one_line_error
from suite_builder import changed, one_net

SUITE = one_net(learner="counted")


@pytest.fixture
def counted():
    """A registry whose learner "counted" is backprop that records the seed of every training."""
    backprop = load_registry().learners.get("backprop")
    calls: list[int] = []

    def train(ctx):
        calls.append(ctx.seed)
        return backprop.train(ctx)

    plugin = types.ModuleType("counting_plugin")
    plugin.harness_register_learners = hookimpl(lambda register: register(Learner(
        name="counted", train=train, defaults=backprop.defaults, check=backprop.check,
        description="backprop, counted")))
    return load_registry(extra=[plugin]), calls


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(registry, suite_file: Path, out: Path, root: Path, cache: ModelCache | None):
    suite = load_suite(suite_file, registry)
    return Runner(suite, registry, out, root, torch.device("cpu"), cache=cache).run()


def comparable(frame):
    return frame.drop(columns=TIMING_COLUMNS).sort_values("config_hash").reset_index(drop=True)


@pytest.mark.slow
def test_a_second_run_directory_takes_the_model_from_the_cache(counted, write_suite, tmp_path, mnist_root):
    registry, calls = counted
    suite_file, cache = write_suite(SUITE), ModelCache(tmp_path / "cache")
    first = run(registry, suite_file, tmp_path / "one", mnist_root, cache)
    assert calls == [0]
    (model_hash,) = set(first["model_hash"])
    assert cache.find(model_hash) is not None

    # pretend the cached model was trained on a GPU: the device is recorded but is not part of the key
    sidecar = cache.weights(model_hash).with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "device": "cuda:0"}))
    second = run(registry, suite_file, tmp_path / "two", mnist_root, cache)
    assert calls == [0]  # nothing trained
    copied = tmp_path / "two" / "models" / f"bp-seed0-{model_hash}.json"
    assert json.loads(copied.read_text())["device"] == "cuda:0" and set(second["device"]) == {"cpu"}
    pd.testing.assert_frame_equal(comparable(first), comparable(second))
    assert (tmp_path / "two" / "models" / f"bp-seed0-{model_hash}.safetensors").read_bytes() == \
        cache.weights(model_hash).read_bytes()

    run(registry, suite_file, tmp_path / "three", mnist_root, None)  # no cache: trains again
    assert calls == [0, 0]


def test_the_key_covers_learner_options_seed_and_versions_not_the_device(counted, write_suite, monkeypatch):
    registry, _ = counted
    suite = load_suite(write_suite(SUITE), registry)
    config, base = model_identity(suite, registry, "mnist", "bp", 0)
    assert model_identity(load_suite(write_suite(SUITE, "again.toml"), registry), registry, "mnist", "bp", 0)[1] == base
    assert model_identity(suite, registry, "mnist", "bp", 1)[1] != base
    longer = load_suite(write_suite(changed(SUITE, {"models.bp.stages.0.epochs": 2}), "longer.toml"), registry)
    assert model_identity(longer, registry, "mnist", "bp", 0)[1] != base
    wider = load_suite(write_suite(changed(SUITE, {"models.bp.hidden": 33}), "wider.toml"), registry)
    assert model_identity(wider, registry, "mnist", "bp", 0)[1] != base
    attacked = load_suite(write_suite(changed(SUITE, {"grid.eps": [0.2]}), "eps.toml"), registry)
    assert model_identity(attacked, registry, "mnist", "bp", 0)[1] == base  # attacks do not change a model

    assert "device" not in json.dumps(config)
    assert tuple(config["info"]["input_shape"]) == (1, 28, 28)
    assert config["versions"]["torch"] == torch.__version__.split("+")[0]
    assert config["versions"]["robustness-harness"]  # the distribution of mnist, repu and the core
    assert "plugin counting_plugin" in config["versions"]  # registered in code: named, no version

    import harness.run.cache

    real = harness.run.cache._version
    monkeypatch.setattr(harness.run.cache, "_version", lambda d: "9.9.9" if d == "torch" else real(d))
    assert model_identity(suite, registry, "mnist", "bp", 0)[1] != base


@pytest.fixture
def filled_cache(counted, write_suite, tmp_path, mnist_root) -> Path:
    """A cache holding the models of seeds 0 and 1."""
    registry, _ = counted
    suite_file = write_suite(changed(SUITE, {"grid.seed": [0, 1]}))
    run(registry, suite_file, tmp_path / "out", mnist_root, ModelCache(tmp_path / "cache"))
    return tmp_path / "cache"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cache_ls_and_rm(filled_cache, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(filled_cache))
    listed = invoke("cache", "ls", "--json")
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    assert isinstance(entries, list)  # what --help says: a JSON array, one object per model
    assert "a JSON array" in invoke("cache", "ls", "--help").output
    assert sorted(e["seed"] for e in entries) == [0, 1]
    assert {(e["model"], e["dataset"], e["learners"]) for e in entries} == {("bp", "mnist", "counted")}
    assert all(e["size"] > 1000 and e["created"] and e["last_used"] for e in entries)
    table = invoke("cache", "ls")
    assert table.exit_code == 0 and all(e["hash"] in table.output for e in entries)
    keep, drop = sorted(entries, key=lambda e: e["seed"])

    assert_one_line_error(invoke("cache", "rm", drop["hash"][:-1] + "x"), "no cached model", f"did you mean '{drop['hash']}'")
    assert_one_line_error(invoke("cache", "rm"), "HASH", "--all", "--older-than")
    assert_one_line_error(invoke("cache", "rm", "--all", drop["hash"]), "exactly one")
    negative = invoke("cache", "rm", "--older-than", "-1")  # click's own usage error
    assert negative.exit_code == 2 and "--older-than" in negative.output and "Traceback" not in negative.output
    assert len(json.loads(invoke("cache", "ls", "--json").output)) == 2  # bad input removed nothing

    removed = invoke("cache", "rm", drop["hash"][:6])  # a unique prefix is enough
    assert removed.exit_code == 0 and "removed 1 model" in removed.output
    assert [e["hash"] for e in json.loads(invoke("cache", "ls", "--json").output)] == [keep["hash"]]
    assert invoke("cache", "rm", "--older-than", "1").exit_code == 0  # used just now: kept
    assert len(json.loads(invoke("cache", "ls", "--json").output)) == 1
    snapshot = filled_cache / "learner-state" / "hebbian" / "0123-000002.safetensors"  # a learner's state
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"state")
    assert "learners' saved state" in invoke("cache", "rm", "--all").output
    assert json.loads(invoke("cache", "ls", "--json").output) == []
    assert list(filled_cache.iterdir()) == []


def test_cache_location_options(tmp_path, monkeypatch):
    from harness.run.cache import cache_dir, default_cache_dir

    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "robustness-harness" / "models"
    assert cache_dir(None) == default_cache_dir()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "env"))
    assert cache_dir(None) == tmp_path / "env"
    assert cache_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert cache_dir(str(tmp_path / "flag"), disabled=True) is None


def test_run_cli_fills_the_cache_and_no_cache_leaves_it_alone(write_suite, tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    monkeypatch.delenv("HARNESS_NO_CACHE", raising=False)
    suite_file = write_suite(changed(SUITE, {"models.bp.stages.0.learner": "backprop"}))
    cache = tmp_path / "cache"
    off = invoke("run", str(suite_file), "--out", str(tmp_path / "a"), "--device", "cpu", "--quiet",
                 "--cache-dir", str(cache), "--no-cache")
    assert off.exit_code == 0, off.output
    assert not cache.exists()
    on = invoke("run", str(suite_file), "--out", str(tmp_path / "b"), "--device", "cpu", "--quiet",
                "--cache-dir", str(cache))
    assert on.exit_code == 0, on.output
    (model_hash,) = set(read_results(tmp_path / "b")["model_hash"])
    assert ModelCache(cache).find(model_hash) is not None
    assert json.loads((tmp_path / "b" / "run.json").read_text())["runs"][-1]["model_cache"] == str(cache)
