"""Checkpoints along one Hebbian schedule (``stop_after``, harness_hebbian.snapshots): a checkpoint is
the layer an uninterrupted run has after that many epochs, and a longer training continues from it."""

from __future__ import annotations

import json

import pytest
import torch

from harness_hebbian.rule import train_hebbian
from suite_builder import bio, changed, suite, torchattacks

SETTINGS = dict(p=2.0, k=2, delta=0.4, lr=0.05, epochs=5, batch_size=40, init_mean=0.0, init_std=1.0,
                precision=1e-30, seed=7)


@pytest.fixture(scope="module")
def x(mnist_small):
    return ((mnist_small[0][:400].flatten(1) - 0.1307) / 0.3081)


def test_a_checkpoint_is_the_weights_after_that_many_epochs_of_the_same_run(x):
    straight, seen = torch.empty(30, 784), {}
    history = train_hebbian(straight, x, **SETTINGS,
                            on_epoch=lambda stats: seen.setdefault(len(seen) + 1, straight.clone()))
    checkpoint, saved = torch.empty(30, 784), []
    early = train_hebbian(checkpoint, x, **SETTINGS, stop=2, on_stop=saved.append)
    assert torch.equal(checkpoint, seen[2]) and not torch.equal(seen[2], straight)
    assert early == history[:2] and early[-1]["lr"] == pytest.approx(0.05 * (1 - 1 / 5))  # the 5-epoch decay
    continued = torch.empty(30, 784)
    rest = train_hebbian(continued, x, **SETTINGS, start=saved[0])
    assert torch.equal(continued, straight) and rest == history
    with pytest.raises(ValueError, match="a state saved at epoch 2 cannot continue a run that stops at 1"):
        train_hebbian(torch.empty(30, 784), x, **SETTINGS, stop=1, start=saved[0])
    with pytest.raises(ValueError, match="stop: expected an epoch between 0 and epochs = 5, got 6"):
        train_hebbian(torch.empty(30, 784), x, **SETTINGS, stop=6)


SUITE = suite(
    train_size=300, test_size=50,
    models={"e2": bio(12, {"epochs": 4, "stop_after": 2}, {"epochs": 1}),
            "full": bio(12, {"epochs": 4}, {"epochs": 1})},
    attacks={"clean": torchattacks("fgsm")},
    grid={"model": ["e2", "full"], "attack": ["clean"], "eps": [0.0]})


def _sidecars(out):
    return {json.loads(p.read_text())["model_key"]: json.loads(p.read_text())
            for p in (out / "models").glob("*.json")}


def _fc1(out, key):
    from safetensors.torch import load_file

    path, = (out / "models").glob(f"{key}-*.safetensors")
    return load_file(str(path))["fc1.weight"]


def test_the_full_model_continues_from_its_checkpoint_and_ends_as_one_run(write_suite, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import cli

    monkeypatch.delenv("HARNESS_NO_CACHE")  # the snapshots live in the (temporary) model cache

    path = write_suite(SUITE)
    cached, alone = tmp_path / "cached", tmp_path / "alone"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(cached), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    snapshots = list((tmp_path / "cache" / "learner-state" / "hebbian").glob("*-000002.safetensors"))
    assert len(snapshots) == 1
    stats = {key: sidecar["stages"][0]["stats"] for key, sidecar in _sidecars(cached).items()}
    assert stats["e2"]["stopped_at"] == 2 and len(stats["e2"]["history"]) == 2
    assert stats["full"]["continued_from"] == 2 and len(stats["full"]["history"]) == 4
    monkeypatch.setenv("HARNESS_NO_CACHE", "1")
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(alone)])
    assert result.exit_code == 0, result.output
    assert "continued_from" not in _sidecars(alone)["full"]["stages"][0]["stats"]
    assert torch.equal(_fc1(cached, "full"), _fc1(alone, "full"))
    assert torch.equal(_fc1(cached, "e2"), _fc1(alone, "e2"))
    assert not torch.equal(_fc1(cached, "e2"), _fc1(cached, "full"))


def test_stop_after_unset_stays_out_of_the_model_hash_and_bad_values_are_one_line(write_suite, tmp_path, registry):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.suite.load import load_suite
    from harness.testing import assert_one_line_error

    suite = load_suite(write_suite(SUITE), registry)
    assert "stop_after" not in suite.models["full"].stages[0].options  # models cached before it keep their hash
    assert suite.models["e2"].stages[0].options["stop_after"] == 2
    bad = write_suite(changed(SUITE, {"models.e2.stages.0.stop_after": 9}), "bad.toml")
    result = CliRunner().invoke(cli, ["run", str(bad), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "models.e2.stages.0", "stop_after", "between 1 and epochs = 4", "got 9")


def test_the_why_suite_reuses_the_seeds_run_s_models_and_names_its_checkpoints_in_order(registry):
    from pathlib import Path

    from harness.run.cache import model_identity
    from harness.suite.load import load_suite

    suites = Path(__file__).resolve().parents[3] / "suites"
    why, seeds = (load_suite(suites / name, registry) for name in ("thesis-why.toml", "thesis-seeds.toml"))
    for key in ("bio", "bp"):  # trained once, by whichever run gets there first
        assert model_identity(why, registry, "mnist", key, 0)[1] == model_identity(seeds, registry, "mnist", key, 0)[1]
    assert why.test_subset == seeds.test_subset
    order = list(dict.fromkeys(cell.model for cell in why.cells))
    stops = [why.models[k].stages[0].options.get("stop_after") for k in order if k.startswith("bio-e")]
    assert stops == sorted(stops) == [20, 50, 100, 200, 500]  # each checkpoint continues from the one before
    assert order.index("bio") > order.index("bio-e500")  # and the full schedule from the last
