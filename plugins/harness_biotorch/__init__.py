"""Learners ``fa``, ``dfa``, ``usf``, ``brsf``, ``frsf``: the feedback-alignment family through BioTorch
(Sanfiz & Akrout 2021, PyPI ``biotorch``; an optional extra: ``pip install -e '.[biotorch]'``).

- ``fa``: feedback alignment (Lillicrap et al. 2016): the error flows back through fixed random matrices B
  instead of W^T;
- ``dfa``: direct feedback alignment (Nokland 2016): every layer gets the output error through its own
  fixed random matrix;
- ``usf``: uniform sign-concordant feedback, B = sign(W) times a scale;
- ``brsf``: batchwise random-magnitude sign-concordant feedback, |R| sign(W) with R redrawn every
  minibatch;
- ``frsf``: fixed random-magnitude sign-concordant feedback, |R| sign(W) with R drawn once
  (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018).

A stage trains a copy of the model whose ``nn.Linear`` / ``nn.Conv2d`` layers BioTorch has converted
(``BioModule``, its own layers and backward), on cross-entropy, with BioTorch's loop: forward (with the
targets and the loss for DFA), ``loss.backward()``, optimizer step. After every epoch the learned weights
are written into the plain model, which is what the harness stores and what attacks see: a module that
computes the true gradient of its forward function. Attacks must attack the function, not the training
rule: a converted module differentiated through its own backward hands them the feedback path instead
(``harness diagnose integrity`` flags it; docs/diagnostics.md).

Without the extra the learners are still registered (suites that name them load, ``harness plugins``
lists them); training fails with one line naming the install command.
"""

from __future__ import annotations

import importlib.util
import math

from harness import hookimpl
from harness.api import Learner, TrainContext
from harness.kit.checks import one_of

INSTALL = "pip install -e '.[biotorch]'"
MODES = {
    "fa": "feedback alignment (Lillicrap et al. 2016): fixed random feedback matrices",
    "dfa": "direct feedback alignment (Nokland 2016): the output error sent to every layer through fixed random matrices",
    "usf": "uniform sign-concordant feedback: sign(W) times a scale",
    "brsf": "batchwise random-magnitude sign-concordant feedback: |R| sign(W), R redrawn every minibatch",
    "frsf": "fixed random-magnitude sign-concordant feedback: |R| sign(W), R drawn once",
}
DEFAULTS = {"epochs": 10, "lr": 1e-3, "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0,
            "batch_size": 100, "init": "xavier", "gradient_clip": False}
PRESETS = {
    # The optimiser settings of BioTorch's own benchmark configurations for LeNet on CIFAR-10
    # (benchmark_configs/cifar10/le_net/{sgd,adam}/*.yaml in its repository), without their 250-epoch schedule.
    "biotorch-sgd": {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128},
    "biotorch-adam": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 128},
}
OPTIMIZERS = ("adam", "sgd")
INITS = ("xavier", "kaiming")


def available() -> bool:
    """Whether BioTorch is importable here (found without importing it, so listing plugins stays fast)."""
    return importlib.util.find_spec("biotorch") is not None


def _checker(mode: str):
    def check(options: dict) -> None:
        for key in ("epochs", "batch_size"):
            if options[key] < 1:
                raise ValueError(f"{key}: expected a positive integer, got {options[key]!r}")
        if not (math.isfinite(options["lr"]) and options["lr"] > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {options['lr']!r}")
        if options["weight_decay"] < 0:
            raise ValueError(f"weight_decay: expected a number >= 0, got {options['weight_decay']!r}")
        if not 0 <= options["momentum"] < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {options['momentum']!r}")
        one_of(options, "optimizer", OPTIMIZERS)
        one_of(options, "init", INITS)
        if mode == "brsf" and options["init"] == "kaiming":
            # BioTorch 0.0.16's brSF layers redraw R in forward() with a name the module never imports.
            raise ValueError('init: BioTorch 0.0.16\'s brsf layers fail with "kaiming" (a NameError in their '
                             'forward pass); use "xavier"')
    return check


def _trainer(mode: str):
    def train(ctx: TrainContext) -> dict:
        from harness_biotorch.train import train_converted

        return train_converted(ctx, mode)
    return train


def _description(mode: str) -> str:
    text = f"BioTorch {mode}: {MODES[mode]}; attacks see the plain model with the learned weights"
    return text if available() else f"{text} (needs the biotorch extra: {INSTALL})"


@hookimpl
def harness_register_learners(register):
    for mode in MODES:
        register(Learner(name=mode, train=_trainer(mode), defaults=DEFAULTS, check=_checker(mode), presets=PRESETS,
                         description=_description(mode)))
