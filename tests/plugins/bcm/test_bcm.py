"""BCM (plugins/harness_bcm): the lateral inhibition is the inverse of its interaction matrix, a unit settles
at the selective fixed point BCM theory predicts, and the learner trains a first layer of real MNIST under the
frozen-layer-plus-head protocol. Bad options and stages are refused with one line."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.testing import stage_context
from harness_bcm.rule import bcm_step, lateral, train_bcm
from suite_builder import backprop, first_layer, repu, suite, torchattacks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(model, data, params=("fc1.weight",), seed=0, **options):
    spec, ctx = stage_context("bcm", model, data, params, seed=seed, **options)
    return spec.train(ctx)


def _model(hidden=64):
    registry = load_registry()
    spec = registry.models.get("repu")
    return spec.build({**spec.defaults, "hidden": hidden}, registry.datasets.get("mnist").info)


@pytest.mark.parametrize("strength", [0.0, 0.01, 0.3])
def test_lateral_solves_the_interaction_matrix(strength):
    units = 7
    c = torch.randn(5, units, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    interaction = (1 - strength) * torch.eye(units, dtype=torch.float64) + strength * torch.ones(units, units,
                                                                                                dtype=torch.float64)
    expected = torch.linalg.solve(interaction, c.T).T
    torch.testing.assert_close(lateral(c, strength), expected)


def test_a_unit_settles_at_the_selective_fixed_point():
    """Two orthonormal patterns shown with probabilities 0.3 and 0.7 to one linear unit: BCM's stable fixed
    points answer one pattern with 1/p and the other with 0 (the non-selective y = 1 on both is unstable)."""
    rare = torch.rand(20000, generator=torch.Generator().manual_seed(1)) < 0.3
    x = torch.stack([rare.float(), (~rare).float()], 1)
    for seed in range(3):
        w = torch.empty(1, 2)
        train_bcm(w, x, lr=0.01, epochs=10, batch_size=10, activation="linear", inhibition=0.0, theta_memory=0.9,
                  normalize=False, lr_decay="linear", init_std=0.5, seed=seed)
        responses = sorted(w[0].tolist())
        p = rare.float().mean().item() if w[0, 0] > w[0, 1] else 1 - rare.float().mean().item()
        assert abs(responses[0]) < 0.05
        assert responses[1] == pytest.approx(1 / p, rel=0.05)


def test_threshold_potentiates_above_and_depresses_below():
    """One step from a zero threshold memory: inputs that drive the unit above E[y^2] pull the weight toward
    them, the others push it away."""
    w = torch.tensor([[1.0, 0.5]])
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # y = 2 (above theta = (4 + 0.25) / 2) and y = 0.5 (below)
    before = w.clone()
    theta = bcm_step(w, None, x, lr=0.1, activation="linear", inhibition=0.0, theta_memory=0.0, normalize=False)
    assert theta.item() == pytest.approx(2.125)
    assert w[0, 0] < before[0, 0]  # y = 2 < theta: depressed
    assert w[0, 1] < before[0, 1]  # y = 0.5 < theta: depressed
    theta = bcm_step(w, None, torch.tensor([[3.0, 0.0], [0.0, 0.1]]), lr=0.1, activation="linear", inhibition=0.0,
                     theta_memory=0.0, normalize=False)
    assert w[0, 0] > 0 and theta.item() > 0


def test_learner_trains_a_first_layer_a_head_can_read(mnist_small):
    model = _model(64)
    stats = _train(model, mnist_small, epochs=2)
    history = stats["history"]
    assert len(history) == 2 and 0 < history[-1]["selective"] < 0.5
    again = _model(64)
    _train(again, mnist_small, epochs=2)
    torch.testing.assert_close(again.fc1.weight, model.fc1.weight)  # same seed, same layer
    other = _model(64)
    _train(other, mnist_small, epochs=2, seed=1)
    assert not torch.equal(other.fc1.weight, model.fc1.weight)


@pytest.mark.slow
def test_suite_with_a_bcm_first_layer_runs_and_beats_chance(run_suite):
    table = run_suite(suite(models={"bcm": repu(64, first_layer("bcm", epochs=3), backprop("fc2.weight", epochs=5, lr=1e-2),
                                              power=1.0, beta=1.0)},
                          attacks={"fgsm": torchattacks("fgsm")}, grid={"model": ["bcm"], "attack": ["fgsm"], "eps": [0.0]}, train_size=5000,
                          test_size=500))
    clean = table.query("eps == 0 and model == 'bcm'")["clean_acc"].iloc[0]
    assert clean > 0.6


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"epochs": 0}, {"inhibition": 1.0}, {"inhibition": -0.1},
                                 {"theta_memory": 1.0}, {"activation": "tanh"}, {"lr_decay": "cosine"},
                                 {"init_std": float("nan")}])
def test_check_rejects_bad_options(bad):
    spec = load_registry().learners.get("bcm")
    spec.check(dict(spec.defaults))
    with pytest.raises(ValueError, match=next(iter(bad))):
        spec.check({**spec.defaults, **bad})


def test_two_weight_matrices_are_refused(mnist_small):
    with pytest.raises(HarnessError, match="exactly one 2-D weight matrix"):
        _train(_model(16), mnist_small, params=("fc1.weight", "fc2.weight"))
