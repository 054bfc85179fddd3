"""Learner ``pepita``: PEPITA (Dellaferrera & Kreiman, ICML 2022), "Present the Error to Perturb the Input To
modulate Activity". No backward pass: a second forward pass on the input modulated by a fixed random
projection F of the output error, and each layer learns from the difference of its activity between the two
passes (the rule: :mod:`harness_pepita.rule`, written from the paper; no maintained library exists).

It trains both weight matrices of a model with one hidden layer and two resume points (``repu``: fc1 and
fc2; see "resume points" in harness/api.py). The paper's network is a plain ReLU net on raw pixels, i.e.
``model = "repu"`` with ``power = 1``, ``beta = 1``, ``mean = 0``, ``std = 1`` (docs/learners.md).

Preset ``dellaferrera2022``: the paper's MNIST setting for its fully connected network, as the authors'
repository (GiorgiaD/PEPITA, README: "the settings and results are the same as reported in the paper") runs
it: lr 0.1, momentum 0.9, minibatch 64, 100 epochs, lr x 0.1 at epochs 60 and 90, dropout 10 %, He-uniform
initial weights, F = 0.05 * U(-sqrt(6/784), +sqrt(6/784)); 1024 hidden units (the model's ``hidden``).
"""

from __future__ import annotations

import math

from harness import hookimpl
from harness.api import Learner, TrainContext
from harness.kit.checks import one_of

DEFAULTS = {"lr": 0.1, "momentum": 0.9, "epochs": 10, "batch_size": 64, "decay_epochs": [], "decay_factor": 0.1,
            "dropout": 0.0, "feedback_scale": 0.05, "init": "he-uniform"}

PRESETS = {
    # The paper's MNIST setting for the fully connected net (values as docs/learners.md sources them).
    "dellaferrera2022": {"lr": 0.1, "momentum": 0.9, "epochs": 100, "batch_size": 64, "decay_epochs": [60, 90],
                         "decay_factor": 0.1, "dropout": 0.1, "feedback_scale": 0.05, "init": "he-uniform"},
}
INITS = ("he-uniform", "keep")


def _check(options: dict) -> None:
    for key in ("lr", "feedback_scale"):
        if not (math.isfinite(options[key]) and options[key] > 0):
            raise ValueError(f"{key}: expected a positive number, got {options[key]!r}")
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer, got {options[key]!r}")
    if not 0 <= options["momentum"] < 1:
        raise ValueError(f"momentum: expected a number in [0, 1), got {options['momentum']!r}")
    if not 0 <= options["dropout"] < 1:
        raise ValueError(f"dropout: expected a drop probability in [0, 1), got {options['dropout']!r}")
    if not 0 < options["decay_factor"] <= 1:
        raise ValueError(f"decay_factor: expected a number in (0, 1], got {options['decay_factor']!r}")
    decay = options["decay_epochs"]
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in decay):
        raise ValueError(f"decay_epochs: expected a list of epoch numbers >= 1, e.g. [60, 90], got {decay!r}")
    one_of(options, "init", INITS)


def _layers(ctx: TrainContext) -> tuple[str, str]:
    """The model's first and last layer, checked against the stage's parameters."""
    from harness.errors import HarnessError

    points = tuple(getattr(ctx.model, "resume_points", ()))
    if len(points) != 2 or not hasattr(ctx.model, "forward_from"):
        raise HarnessError(f"pepita trains a model with one hidden layer and resume points (first layer, output "
                           f"layer), such as 'repu'; {type(ctx.model).__name__} has resume points {points or 'none'}")
    first, last = points
    wanted = {f"{first}.weight", f"{last}.weight"}
    if set(ctx.params) != wanted:
        raise HarnessError(f"pepita trains both weight matrices together ({', '.join(sorted(wanted))}); the stage "
                           f"names {', '.join(ctx.params) or 'none'}; set params = [\"*\"]")
    return first, last


def train(ctx: TrainContext) -> dict:
    from harness.kit.layers import module_inputs
    from harness.kit.measures import accuracy
    from harness_pepita.rule import train_pepita

    first, last = _layers(ctx)
    options = ctx.options
    classes = ctx.model.get_submodule(last).weight.shape[0]
    inputs = module_inputs(ctx.model, first, ctx.x)  # what the first layer receives inside the model
    advance = ctx.progress(options["epochs"], f"pepita {first}.weight, {last}.weight")
    history = train_pepita(ctx.model, first, last, inputs, ctx.y, classes=classes, seed=ctx.seed,
                           evaluate=lambda: accuracy(ctx.model, ctx.x_test, ctx.y_test),
                           on_epoch=lambda stats: advance(**stats), **options)
    return {"history": history}


@hookimpl
def harness_register_learners(register):
    register(Learner(name="pepita", train=train, defaults=DEFAULTS, check=_check, presets=PRESETS,
                     description="PEPITA (Dellaferrera & Kreiman 2022): two forward passes, the second on the "
                                 "input modulated by a fixed random projection of the error; no backward pass"))
