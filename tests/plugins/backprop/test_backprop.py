"""The backprop learner: frozen-feature caching changes speed, not results; schedules and presets;
Krotov's power loss trains; bad options are suite errors."""

from __future__ import annotations

import pytest
import torch

from harness.api import TrainContext
from harness.errors import SuiteError
from harness.plugins import load_registry
from harness.suite.load import load_suite
import suite_builder as build


def context(model, params, options, data, seed=0):
    x, y, xt, yt = data
    return TrainContext(model=model, params=params, options=options, x=x, y=y, x_test=xt, y_test=yt,
                        device=torch.device("cpu"), seed=seed, progress=lambda total, description=None: (lambda n=1, **s: None))


def repu(hidden=64, **options):
    registry = load_registry()
    spec = registry.models.get("repu")
    torch.manual_seed(0)
    info = registry.datasets.get("mnist").info
    return spec.build({**spec.defaults, "hidden": hidden, **options}, info)


def learner_options(**options):
    return {**load_registry().learners.get("backprop").defaults, **options}


def test_cached_head_training_equals_full_forward(mnist_small):
    data = tuple(t[:3000] if i < 2 else t[:300] for i, t in enumerate(mnist_small))
    results = []
    for cache in (True, False):
        model = repu()
        model.fc1.weight.requires_grad_(False)  # frozen first layer, as after a Hebbian stage
        learner = load_registry().learners.get("backprop")
        stats = learner.train(context(model, {"fc2.weight": model.fc2.weight},
                                      learner_options(epochs=2, cache_features=cache), data))
        results.append((model.fc2.weight.detach().clone(), stats))
    (cached, cached_stats), (full, full_stats) = results
    assert cached_stats["cached_features"] is True and full_stats["cached_features"] is False
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-6)
    assert [h["test_acc"] for h in cached_stats["history"]] == [h["test_acc"] for h in full_stats["history"]]


def test_end_to_end_training_does_not_cache(mnist_small):
    model = repu()
    stats = load_registry().learners.get("backprop").train(
        context(model, dict(model.named_parameters()), learner_options(epochs=1), tuple(t[:1000] for t in mnist_small)))
    assert stats["cached_features"] is False


def test_schedule_sets_the_rate_of_each_phase(mnist_small):
    model = repu(hidden=32)
    schedule = [[1e-3, 2], [1e-4, 1]]
    stats = load_registry().learners.get("backprop").train(
        context(model, dict(model.named_parameters()), learner_options(schedule=schedule),
                tuple(t[:1000] for t in mnist_small)))
    assert [h["lr"] for h in stats["history"]] == [1e-3, 1e-3, 1e-4]
    assert [h["epoch"] for h in stats["history"]] == [1, 2, 3]


def test_krotov_loss_trains_a_head(mnist_small):
    model = repu(hidden=100, power=1.0, beta=0.1)  # tanh must not start saturated
    stats = load_registry().learners.get("backprop").train(
        context(model, dict(model.named_parameters()), learner_options(epochs=2, loss="krotov", m=6.0),
                tuple(t[:5000] if i < 2 else t[:500] for i, t in enumerate(mnist_small))))
    history = stats["history"]
    assert history[-1]["test_acc"] > 0.8
    assert history[-1]["loss"] < history[0]["loss"]


def _hand_loop(data, epochs, lr, reset):
    """The thesis's train_routine written out: a fresh torch.optim.Adam per epoch when ``reset``."""
    import torch.nn.functional as F

    x, y = data[0], data[1]
    model = repu(hidden=32, power=1.0)
    generator = torch.Generator().manual_seed(0)  # the learner's minibatch order: one randperm per epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        if reset:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 100):
            batch = order[start:start + 100]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.fc1.weight.detach(), optimizer


def test_optimizer_reset_restarts_adam_every_epoch_like_the_thesis(mnist_small):
    data = tuple(t[:2000] if i < 2 else t[:200] for i, t in enumerate(mnist_small))
    learner = load_registry().learners.get("backprop")
    trained = {}
    for reset in ("never", "epoch"):
        model = repu(hidden=32, power=1.0)
        learner.train(context(model, dict(model.named_parameters()),
                              learner_options(epochs=3, lr=1e-2, optimizer_reset=reset), data))
        trained[reset] = model.fc1.weight.detach()
    by_hand, optimizer = _hand_loop(data, epochs=3, lr=1e-2, reset=True)
    # the last Adam has seen one epoch only: 20 steps, not 60
    assert [int(state["step"]) for state in optimizer.state.values()] == [20, 20]
    torch.testing.assert_close(trained["epoch"], by_hand, rtol=1e-4, atol=1e-5)
    kept, _ = _hand_loop(data, epochs=3, lr=1e-2, reset=False)
    torch.testing.assert_close(trained["never"], kept, rtol=1e-4, atol=1e-5)
    assert (trained["epoch"] - trained["never"]).abs().max() > 1e-3  # the reset changes the result


def stage_suite(**stage):
    """Model m: the backprop learner with ``stage``'s options."""
    return build.fgsm_on("m", build.repu(None, build.backprop(**stage)))


def test_thesis_preset_is_the_thesis_schedule(write_suite):
    suite = load_suite(write_suite(stage_suite(preset="thesis")), load_registry())
    options = suite.models["m"].stages[0].options
    assert options["schedule"] == [[1e-3, 100], [5e-4, 50], [1e-4, 50], [5e-5, 50], [1e-5, 50]]
    assert sum(n for _, n in options["schedule"]) == 300 and options["batch_size"] == 100
    assert options["optimizer_reset"] == "epoch"  # train_routine creates Adam inside its epoch loop
    # keys written next to the preset override it
    suite = load_suite(write_suite(stage_suite(preset="thesis", batch_size=50)), load_registry())
    assert suite.models["m"].stages[0].options["batch_size"] == 50


@pytest.mark.parametrize("stage,key,hint", [
    ({"preset": "thesys"}, "models.m.stages.0.preset", "did you mean 'thesis'"),
    ({"schedule": [[0.001]]}, "models.m.stages.0.schedule", "[learning rate, epochs] pairs"),
    ({"schedule": [[-1.0, 3]]}, "models.m.stages.0.schedule", "pairs"),
    ({"loss": "mse"}, "models.m.stages.0.loss", "cross-entropy, krotov"),
    ({"optimizer_reset": "batch"}, "models.m.stages.0.optimizer_reset", "never, epoch"),
])
def test_bad_options_are_suite_errors(write_suite, stage, key, hint):
    path = write_suite(stage_suite(**stage))
    with pytest.raises(SuiteError) as info:
        load_suite(path, load_registry())
    assert str(info.value).startswith(f"{path}: {key}:") and hint in str(info.value)


def test_adam_is_fused_where_torch_has_it_and_updates_like_the_default():
    """harness.kit.optim.adam takes torch's fused kernel (CPU since torch 2.4) and steps like for-each Adam."""
    import torch

    from harness.kit.optim import adam

    torch.manual_seed(0)
    start = torch.randn(50, 30)
    grads = [torch.randn(50, 30) for _ in range(5)]
    results = {}
    for name, make in (("fused", lambda p: adam([p], lr=1e-2, weight_decay=1e-3)),
                       ("default", lambda p: torch.optim.Adam([p], lr=1e-2, weight_decay=1e-3))):
        param = torch.nn.Parameter(start.clone())
        optimizer = make(param)
        for grad in grads:
            param.grad = grad.clone()
            optimizer.step()
        results[name] = (param.detach(), optimizer.defaults.get("fused"))
    has_fused_cpu = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)
    assert bool(results["fused"][1]) == has_fused_cpu and not results["default"][1]
    assert not torch.equal(results["fused"][0], start)
    assert torch.allclose(results["fused"][0], results["default"][0], atol=1e-6)
