"""The Krotov-Hopfield learner on real MNIST: the update matches the published rule, weights of
units that win converge to unit norm, and the learned detectors look like digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness_hebbian.rule import hebbian_step, train_hebbian


def reference_update(W, X, p, k, delta, eps, prec=1e-30):
    """A plain float64 transcription of the published minibatch update (PNAS 2019, reference code):
    rank units by the l_p-weighted current, +1 for the first, -delta for the k-th, then
    dW = g X - (g * I) W, normalised by its largest entry."""
    sig = np.sign(W)
    tot_input = (sig * np.abs(W) ** (p - 1)) @ X.T                  # [H, B]
    order = np.argsort(tot_input, axis=0)
    g = np.zeros_like(tot_input)
    columns = np.arange(X.shape[0])
    g[order[-1], columns] = 1.0
    g[order[-k], columns] = -delta
    xx = np.sum(g * tot_input, axis=1)
    ds = g @ X - xx[:, None] * W
    nc = max(np.abs(ds).max(), prec)
    return W + eps * ds / nc


@pytest.fixture(scope="module")
def inputs(mnist_small):
    x, y, _, _ = mnist_small
    return ((x.flatten(1) - 0.1307) / 0.3081), y


@pytest.mark.parametrize("p,k", [(2.0, 2), (3.0, 7)])
def test_step_matches_published_rule(inputs, p, k):
    x, _ = inputs
    rng = np.random.default_rng(0)
    W0 = rng.normal(0, 1, (60, 784))
    batch = x[:100].double().numpy()
    expected = W0
    actual = torch.from_numpy(W0.copy())
    for step in range(5):  # several steps, so ranking errors would compound
        mb = batch[step * 20:(step + 1) * 20]
        expected = reference_update(expected, mb, p, k, 0.4, 0.05)
        hebbian_step(actual, torch.from_numpy(mb), p, k, 0.4, 0.05, 1e-30)
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def trained(inputs):
    x, _ = inputs
    torch.manual_seed(0)
    weight = torch.empty(100, 784)
    history = train_hebbian(weight, x, p=2.0, k=2, delta=0.4, lr=0.04, epochs=30, batch_size=100,
                            init_mean=0.0, init_std=1.0, precision=1e-30, seed=0)
    return weight, history


def test_units_that_win_reach_unit_norm(trained, inputs):
    weight, history = trained
    x, _ = inputs
    wins = torch.bincount((x @ weight.T).argmax(1), minlength=len(weight))
    frequent = wins >= 20
    assert frequent.sum() >= 50, "most units should win regularly"
    norms = weight[frequent].norm(dim=1)
    assert torch.all((norms - 1).abs() < 0.05), norms
    # From N(0, 1) initial weights (norm ~28) the norm deviation shrinks over training.
    assert history[-1]["norm_dev"] < 0.1 * history[0]["norm_dev"]
    assert [h["epoch"] for h in history] == list(range(1, 31))


def test_detectors_resemble_digits(trained, inputs):
    weight, _ = trained
    x, y = inputs
    wins = torch.bincount((x @ weight.T).argmax(1), minlength=len(weight))
    detectors = F.normalize(weight[wins >= 20], dim=1)
    random = F.normalize(torch.randn(100, 784, generator=torch.Generator().manual_seed(1)), dim=1)
    images = F.normalize(x, dim=1)
    class_means = F.normalize(torch.stack([x[y == c].mean(0) for c in range(10)]), dim=1)
    # Each detector is close to some real digit and to some class's mean image; random weights are not.
    assert (detectors @ images.T).max(1).values.median() > 0.7
    assert (random @ images.T).max(1).values.max() < 0.3
    assert (detectors @ class_means.T).max(1).values.median() > 0.5
    assert (random @ class_means.T).max(1).values.max() < 0.2


def test_nan_weights_stop_training(inputs):
    x, _ = inputs
    bad = x[:200].clone()
    bad[5, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        train_hebbian(torch.empty(20, 784), bad, p=2.0, k=2, delta=0.4, lr=0.04, epochs=1, batch_size=100,
                      init_mean=0.0, init_std=1.0, precision=1e-30, seed=0)
