"""Tests of the SoftHebb plugin, written with the fixtures robustness-harness ships for plugin authors
(``harness.testing``: harness_dataset, harness_model, harness_plugin, run_suite), which pytest loads
by itself once robustness-harness is installed."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch
from click.testing import CliRunner

from harness.api import TrainContext
from harness.cli import cli
from harness.errors import SuiteError
from harness.plugins import builtin_plugin_names, load_registry
from harness.suite.load import load_suite
from harness.testing import to_toml
import harness_softhebb
from harness_softhebb.rule import soft_wta, softhebb_step, train_softhebb


def suite(**softhebb) -> dict:
    """A SoftHebb layer (frozen) under a backprop head, on the digits, attacked by FGSM."""
    return {
        "suite": {"name": "softhebb-test"},
        "data": {"dataset": "digits"},
        "eval": {"convergence_images": 0},
        "models": {"net": {
            "model": "repu", "hidden": 64, "power": 1.0, "beta": 1.0,
            "stages": [{"learner": "softhebb", "params": ["fc1.weight"], "freeze": True, "epochs": 8, **softhebb},
                       {"learner": "backprop", "params": ["fc2.weight"], "epochs": 10}]}},
        "attacks": {"fgsm": {"attack": "fgsm", "backend": "torchattacks"}},
        "grid": {"model": ["net"], "attack": ["fgsm"], "eps": [0.0, 0.1]},
    }


# -- the rule ----------------------------------------------------------------------------------

def reference_step(weight, x, lr, temperature, anti_hebbian):
    """The published rule written out per example and per unit, in float64: the mean over the
    minibatch of dw_k = lr * y_k * (x - u_k * w_k), y = softmax(u / tau) (non-winners negated in
    the anti-Hebbian variant)."""
    h, d = weight.shape
    update = [[0.0] * d for _ in range(h)]
    for xb in x.tolist():
        u = [sum(w_ki * x_i for w_ki, x_i in zip(row, xb)) for row in weight.tolist()]
        top = max(u)
        z = [pow(2.718281828459045, (u_k - top) / temperature) for u_k in u]
        y = [z_k / sum(z) for z_k in z]
        winner = u.index(top)
        for k, row in enumerate(weight.tolist()):
            y_k = -y[k] if anti_hebbian and k != winner else y[k]
            for i in range(d):
                update[k][i] += lr * y_k * (xb[i] - u[k] * row[i]) / len(x)
    return weight + torch.tensor(update, dtype=torch.float64)


@pytest.mark.parametrize("anti_hebbian", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.2])
def test_a_step_is_the_published_rule(anti_hebbian, temperature):
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(5, 7, generator=generator, dtype=torch.float64) * 0.5
    x = torch.randn(6, 7, generator=generator, dtype=torch.float64)
    expected = reference_step(weight, x, 0.05, temperature, anti_hebbian)
    softhebb_step(weight, x, lr=0.05, temperature=temperature, anti_hebbian=anti_hebbian)
    torch.testing.assert_close(weight, expected, rtol=0, atol=1e-12)


def test_soft_wta_signs():
    currents = torch.tensor([[1.0, 3.0, 2.0]])
    plain = soft_wta(currents, 1.0, anti_hebbian=False)
    anti = soft_wta(currents, 1.0, anti_hebbian=True)
    torch.testing.assert_close(plain.sum(1), torch.ones(1))
    assert plain.argmax() == 1 and (plain > 0).all()
    torch.testing.assert_close(anti, plain * torch.tensor([[-1.0, 1.0, -1.0]]))


def test_weights_converge_towards_unit_norm_and_runs_repeat(harness_dataset):
    x = harness_dataset.x.flatten(1)
    first, again = torch.empty(20, 64), torch.empty(20, 64)
    history = train_softhebb(first, x, lr=0.05, epochs=6, batch_size=50, temperature=1.0, init_std=0.02, seed=1)
    train_softhebb(again, x, lr=0.05, epochs=6, batch_size=50, temperature=1.0, init_std=0.02, seed=1)
    assert torch.equal(first, again)  # the seed fixes everything
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[0]["norm_dev"] > 0.3 and history[-1]["norm_dev"] < history[0]["norm_dev"] / 2
    assert 0 <= history[-1]["never_won"] < 20
    assert 0 < history[-1]["entropy"] < torch.log(torch.tensor(20.0))


def test_a_diverging_rate_is_an_error_not_nan_weights(harness_dataset):
    with pytest.raises(FloatingPointError, match="softhebb: NaN or inf in the weights after epoch 1; lower lr"):
        train_softhebb(torch.empty(10, 64), harness_dataset.x.flatten(1) * 1e3, lr=10.0, epochs=3, batch_size=50,
                       temperature=1.0, init_std=0.1, seed=0)


# -- the learner, through the harness ----------------------------------------------------------

def test_the_learner_retrains_a_trained_models_first_layer(harness_model, harness_dataset):
    """``train(ctx)`` as the runner calls it, on the first layer of the fixture's trained ReLU net."""
    data = harness_dataset
    weight = harness_model.fc1.weight
    before = weight.detach().clone()
    options = {**harness_softhebb.DEFAULTS, "epochs": 3}
    stats = harness_softhebb.train(TrainContext(
        model=harness_model, params={"fc1.weight": weight}, options=options, x=data.x, y=data.y,
        x_test=data.x_test, y_test=data.y_test, device=torch.device("cpu"), seed=0,
        progress=lambda total, description=None: (lambda n=1, **s: None), info=data.info))
    assert [h["epoch"] for h in stats["history"]] == [1, 2, 3]
    assert json.loads(json.dumps(stats)) == stats  # stored in the model's JSON sidecar
    assert not torch.equal(weight, before) and torch.isfinite(weight).all()


def test_a_suite_trains_and_attacks_a_softhebb_net(harness_plugin, run_suite):
    harness_plugin(harness_softhebb)
    frame = run_suite(suite())
    cells = frame[frame["attack"] == "fgsm"].set_index("eps")
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert cells.loc[0.0, "learners"] == "softhebb[fc1.weight,frozen] > backprop[fc2.weight]"
    assert cells.loc[0.0, "clean_acc"] > 0.8  # ten classes: chance is 0.1
    assert cells.loc[0.1, "robust_acc"] < cells.loc[0.0, "clean_acc"]

    (model_file,) = (frame.attrs["out_dir"] / "models").glob("net-*.safetensors")
    history = json.loads(model_file.with_suffix(".json").read_text())["stages"][0]["stats"]["history"]
    assert len(history) == 8 and history[-1]["norm_dev"] < history[0]["norm_dev"]

    # the plugin's command prints the same history from the model file
    result = CliRunner().invoke(cli, ["softhebb-stats", str(model_file)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "softhebb on fc1.weight" and lines[1].split() == [
        "epoch", "norm_dev", "never_won", "winner_changes", "entropy"]
    assert len(lines) == 2 + 8 and lines[-1].split()[0] == "8"


def test_the_command_refuses_a_model_without_softhebb(harness_plugin, run_suite, tmp_path):
    harness_plugin(harness_softhebb)
    fake = tmp_path / "m.safetensors"
    fake.write_bytes(b"")
    fake.with_suffix(".json").write_text(json.dumps({"stages": [{"learner": "backprop"}]}))
    result = CliRunner().invoke(cli, ["softhebb-stats", str(fake)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {fake}: no softhebb stage in this model (stages: backprop)\n"


@pytest.mark.parametrize("option, message", [
    ({"temperature": -1.0}, "temperature: expected a positive number"),
    ({"inputs": "pixels"}, "inputs: expected one of 'layer', 'unit', got 'pixels'"),
    ({"temprature": 1.0}, "did you mean 'temperature'"),
])
def test_bad_options_are_suite_errors(harness_plugin, tmp_path, option, message):
    harness_plugin(harness_softhebb)
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(suite(**option)))
    with pytest.raises(SuiteError, match=message):
        load_suite(path, load_registry())


# -- packaging ---------------------------------------------------------------------------------

def test_the_entry_point_registers_the_plugin(monkeypatch):
    """The installed distribution is found through the ``harness`` entry-point group alone."""
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="harness") if ep.name == "softhebb"]
    assert entry_point.value == "harness_softhebb" and entry_point.dist.name == "harness-softhebb"
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", ",".join([*builtin_plugin_names(), "softhebb"]))
    (entry,) = [e for e in load_registry().learners.entries() if e.key == "softhebb"]
    assert (entry.plugin, entry.distribution) == ("softhebb", "harness-softhebb")
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "softhebb")
    assert "softhebb" not in load_registry().learners.names()
