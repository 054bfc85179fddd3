"""Learner ``oja``: a classical Hebbian control for the Krotov-Hopfield layer. Oja's rule (1982;
thesis section 2.1.1) normalises Hebb's rule so a single unit converges to the first principal
component of its input; generalised to many units so that they differ:

* ``variant = "sanger"`` (default): Sanger's generalized Hebbian algorithm,
  dW = lr * (y x^T - LT(y y^T) W), y = W x, LT = lower triangle including the diagonal. Unit i
  converges to the i-th principal component (unit norm, mutually orthogonal), in order.
* ``variant = "subspace"``: Oja's symmetric subspace rule, dW = lr * (y x^T - y y^T W). The rows
  converge to an orthonormal basis of the span of the top-H components, but not to the components
  themselves (any rotation within the span is a fixed point).

Updates are averaged over minibatches of ``batch_size`` inputs. The inputs are what the layer receives
inside the model (:func:`harness.kit.layers.layer_inputs`; for ``repu`` the mean/std-normalised pixels).
With ``center = true`` (default) the per-feature training mean is subtracted first: the rules find
eigenvectors of E[x x^T], which are the principal components only for centred data; uncentred, the
first unit tends to the mean image. The model itself still sees uncentred inputs at test time.

A layer has at most as many principal directions as its input has dimensions (784 for MNIST, fewer
with non-zero variance). With more units than that (e.g. 2000 > 784), Sanger's extra units have
nothing left to explain: their weights decay toward zero (slowly: the decay is cubic in the weight),
except for the part of their initial weights orthogonal to the data (e.g. on pixels that never vary),
which shrinks only while the unit still responds; hence the small ``init_std``. They end up as (near)
dead units in the net, which is what a PCA layer of that width is. With the subspace rule the 2000 rows instead
share the data span (W^T W -> identity on it), so rows end with norm below 1. Neither crashes; the
per-epoch ``dead`` stat reports the share of rows with norm < 0.1.

Stability: lr times the largest eigenvalue of the input covariance must stay well below 1 (about 57
for normalised MNIST, hence lr = 1e-3); a NaN or inf in the weights raises FloatingPointError.
Written by hand (a few lines of torch, in :mod:`harness_oja.rule`).
"""

from __future__ import annotations

import math

from harness import hookimpl
from harness.api import Learner, TrainContext

DEFAULTS = {"variant": "sanger", "lr": 1e-3, "epochs": 10, "batch_size": 100, "init_std": 0.01,
            "center": True}
VARIANTS = ("sanger", "subspace")


def _check(options: dict) -> None:
    if options["variant"] not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(map(repr, VARIANTS))}, got {options['variant']!r}")
    for key in ("lr", "init_std"):
        if not (math.isfinite(options[key]) and options[key] > 0):
            raise ValueError(f"{key}: expected a positive number")
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")


def train(ctx: TrainContext) -> dict:
    from harness.errors import HarnessError
    from harness.kit.layers import layer_inputs
    from harness_oja.rule import train_oja

    if len(ctx.params) != 1 or next(iter(ctx.params.values())).dim() != 2:
        raise HarnessError(f"oja trains exactly one 2-D weight matrix per stage; got "
                           f"{', '.join(ctx.params)}; set params = [\"fc1.weight\"]")
    (name, weight), = ctx.params.items()
    options = ctx.options
    inputs = layer_inputs(ctx.model, name, ctx.x)
    advance = ctx.progress(options["epochs"], f"oja ({options['variant']}) {name}")
    history = train_oja(weight.data, inputs, seed=ctx.seed, on_epoch=lambda s: advance(**s), **options)
    return {"history": history}


@hookimpl
def harness_register_learners(register):
    register(Learner(name="oja", train=train, defaults=DEFAULTS, check=_check,
                     description="Oja/Sanger Hebbian PCA of the layer's input (unsupervised, one layer)"))
