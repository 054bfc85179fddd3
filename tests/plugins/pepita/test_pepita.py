"""PEPITA (plugins/harness_pepita): the update is the paper's rule, it learns real MNIST without ever
differentiating anything, and bad options or models are refused with one line. Real data, small sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.api import TrainContext
from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.testing import stage_context
from harness_pepita.rule import TwoPasses, feedback_matrix, he_uniform, pepita_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The paper's network: a plain ReLU net on raw [0, 1] pixels (repu with power 1, beta 1, no normalisation).
PAPER_NET = {"power": 1.0, "beta": 1.0, "mean": 0.0, "std": 1.0}


def _quiet(total, description=None):
    return lambda n=1, **stats: None


def _build(hidden=128, **options):
    registry = load_registry()
    spec = registry.models.get("repu")
    dataset = registry.datasets.get("mnist")
    torch.manual_seed(0)
    return spec.build({**spec.defaults, "hidden": hidden, **PAPER_NET, **options}, dataset.info), dataset.info


def _train(model, data, params=("fc1.weight", "fc2.weight"), seed=0, info=None, **options):
    spec, ctx = stage_context("pepita", model, data, params, seed=seed, info=info, **options)
    return spec.train(ctx)


@pytest.fixture(scope="module")
def mnist(mnist_small):
    x, y, x_test, y_test = mnist_small
    return x[:5000], y[:5000], x_test[:500], y_test[:500]


def test_learns_mnist_without_any_backward_pass(mnist, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("PEPITA must not call autograd")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    model, info = _build()
    # The learner's first draw (seed 0): fc1's He-uniform initial weights.
    before = he_uniform(tuple(model.fc1.weight.shape), torch.Generator().manual_seed(0))
    stats = _train(model, mnist, epochs=3, info=info)
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(model.fc1.weight, before)
    history = stats["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # Chance is 10 %; measured 85.4 % on these 500 test images after 3 epochs on 5 000 training images.
    assert history[-1]["test_acc"] > 0.75, history
    assert history[-1]["loss"] < history[0]["loss"], history
    # The first layer learns too, not only the delta-rule output layer.
    moved = (model.fc1.weight - before).norm() / before.norm()
    assert moved > 0.01, float(moved)


def _reference_steps(w1, w2, feedback, batches, lr, momentum):
    """The paper's equations in float64 numpy for a ReLU net with softmax output, momentum descent."""
    v1, v2 = np.zeros_like(w1), np.zeros_like(w2)
    for x, t in batches:
        def forward(inputs):
            h = np.maximum(inputs @ w1.T, 0)
            z = h @ w2.T
            p = np.exp(z - z.max(1, keepdims=True))
            return h, p / p.sum(1, keepdims=True)
        h1, out = forward(x)
        e = out - t
        x_mod = x + e @ feedback.T
        h1_mod, out_mod = forward(x_mod)
        e_mod = out_mod - t
        d1 = (h1 - h1_mod).T @ x_mod / len(x)
        d2 = e_mod.T @ h1_mod / len(x)
        v1 = momentum * v1 + lr * d1
        v2 = momentum * v2 + lr * d2
        w1, w2 = w1 - v1, w2 - v2
    return w1, w2


def test_the_update_is_the_papers_rule(mnist):
    x, y, _, _ = mnist
    model, _ = _build(hidden=32)
    model.double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.fc1.weight.copy_(he_uniform((32, 784), generator))
        model.fc2.weight.copy_(he_uniform((10, 32), generator))
    # A feedback 10x the paper's scale, so the modulated pass differs visibly from the standard one.
    feedback = feedback_matrix(784, 10, 0.5, generator).double()
    batches = [(x[i:i + 16].flatten(1).double(), torch.nn.functional.one_hot(y[i:i + 16], 10).double())
               for i in (0, 16, 32)]
    w1_ref, w2_ref = _reference_steps(model.fc1.weight.detach().numpy(), model.fc2.weight.detach().numpy(),
                                      feedback.numpy(), [(a.numpy(), t.numpy()) for a, t in batches], 0.1, 0.9)
    passes = TwoPasses(model, "fc1", "fc2")
    velocity = [torch.zeros_like(model.fc1.weight), torch.zeros_like(model.fc2.weight)]
    with torch.no_grad():
        for inputs, target in batches:
            pepita_step(passes, model.fc1.weight, model.fc2.weight, velocity, inputs, target, feedback, 0.1, 0.9)
    passes.close()
    np.testing.assert_allclose(model.fc1.weight.detach().numpy(), w1_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.fc2.weight.detach().numpy(), w2_ref, rtol=0, atol=1e-12)
    assert np.abs(w1_ref - he_uniform((32, 784), torch.Generator().manual_seed(3)).double().numpy()).max() > 1e-4
    assert not model.fc2._forward_pre_hooks  # the hook is gone after close()


def test_seeded(mnist):
    small = tuple(t[:1000] for t in mnist[:2]) + mnist[2:]
    first, _ = _build(hidden=16)
    _train(first, small, epochs=1, dropout=0.1)
    again, _ = _build(hidden=16)
    _train(again, small, epochs=1, dropout=0.1)
    assert torch.equal(first.fc1.weight, again.fc1.weight) and torch.equal(first.fc2.weight, again.fc2.weight)
    other, _ = _build(hidden=16)
    _train(other, small, seed=1, epochs=1, dropout=0.1)
    assert not torch.allclose(first.fc1.weight, other.fc1.weight)


def test_preset_is_the_papers_mnist_setting():
    spec = load_registry().learners.get("pepita")
    preset = spec.presets["dellaferrera2022"]
    assert preset == {"lr": 0.1, "momentum": 0.9, "epochs": 100, "batch_size": 64, "decay_epochs": [60, 90],
                      "decay_factor": 0.1, "dropout": 0.1, "feedback_scale": 0.05, "init": "he-uniform"}
    spec.check({**spec.defaults, **preset})


def test_learning_rate_decays_at_the_named_epochs(mnist):
    small = tuple(t[:640] for t in mnist[:2]) + mnist[2:]
    model, _ = _build(hidden=8)
    history = _train(model, small, epochs=4, decay_epochs=[1, 3], decay_factor=0.5, lr=0.08)["history"]
    assert [h["lr"] for h in history] == pytest.approx([0.08, 0.04, 0.04, 0.02])


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"momentum": 1.0}, {"dropout": 1.0}, {"feedback_scale": -0.05},
                                 {"epochs": 0}, {"batch_size": 0}, {"decay_factor": 0.0}, {"decay_epochs": [0]},
                                 {"init": "xavier"}])
def test_check_rejects_bad_options(bad):
    spec = load_registry().learners.get("pepita")
    (key, _), = bad.items()
    with pytest.raises(ValueError, match=rf"^{key}: expected"):
        spec.check({**spec.defaults, **bad})


def test_refuses_a_partial_stage_and_a_model_without_two_layers(mnist):
    model, _ = _build(hidden=8)
    with pytest.raises(HarnessError, match=r"trains both weight matrices together .*set params = \[\"\*\"\]"):
        _train(model, mnist, params=("fc2.weight",), epochs=1)
    deep = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(HarnessError, match="one hidden layer and resume points"):
        spec = load_registry().learners.get("pepita")
        x, y, xt, yt = mnist
        spec.train(TrainContext(model=deep, params=dict(deep.named_parameters()), options=dict(spec.defaults), x=x,
                                y=y, x_test=xt, y_test=yt, device=torch.device("cpu"), seed=0, progress=_quiet))


def test_diverging_weights_stop_training(mnist):
    small = tuple(t[:640] for t in mnist[:2]) + mnist[2:]
    model, _ = _build(hidden=8, mean=0.1307, std=0.3081)
    with pytest.raises(FloatingPointError, match="pepita: NaN or inf in the weights after epoch 1; lower lr"):
        _train(model, small, epochs=1, lr=1e6, momentum=0.0)


def test_in_a_suite_and_listed(run_suite, mnist_root):
    frame = run_suite({
        "suite": {"name": "pepita"},
        "data": {"dataset": "mnist", "train_size": 3000, "test_size": 200},
        "models": {"pepita": {"model": "repu", "hidden": 64, **PAPER_NET,
                              "stages": [{"learner": "pepita", "preset": "dellaferrera2022", "epochs": 2}]}},
        "attacks": {"fgsm": {"attack": "fgsm", "backend": "torchattacks"}},
        "grid": {"model": ["pepita"], "attack": ["fgsm"], "eps": [0.0, 0.1]},
    }, data_root=mnist_root)
    rows = frame[frame["attack"] == "fgsm"]
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert rows["learners"].iloc[0] == "pepita[*]"
    assert rows[rows["eps"] == 0.0]["clean_acc"].iloc[0] > 0.6  # chance 0.1; measured 0.78
