"""Learner ``random``: a frozen random first layer with rows of the same l_p norm as a converged
Hebbian layer. It is the control for the Bio net: [random on fc1.weight, frozen] > [backprop on
fc2.weight] has the same architecture, activation (RePU) and weight scale as
[hebbian on fc1.weight, frozen] > [backprop on fc2.weight]; only the features are not learned. If it
is as robust as the Bio net, the robustness comes from the architecture, not from Hebbian features.

Krotov-Hopfield weights converge to rows of l_p norm R (R = 1 in the reference code), so set ``p`` to
the Hebbian stage's ``p``. Every row (output unit) of each parameter with two or more dimensions is
drawn i.i.d. from N(0, 1) or U(-1, 1) with a generator seeded by the run's seed, then scaled to norm
R. Parameters with fewer than two dimensions (biases) are refused: they have no rows.
"""

from __future__ import annotations

import math

from harness import hookimpl
from harness.api import Learner, TrainContext

DEFAULTS = {"p": 2.0, "R": 1.0, "distribution": "normal"}
DISTRIBUTIONS = ("normal", "uniform")


def _check(options: dict) -> None:
    if not (math.isfinite(options["p"]) and options["p"] >= 1):
        raise ValueError("p: expected a finite number >= 1 (the l_p norm; use the Hebbian stage's p)")
    if not (math.isfinite(options["R"]) and options["R"] > 0):
        raise ValueError("R: expected a positive number (the row norm Hebbian weights converge to, 1.0)")
    if options["distribution"] not in DISTRIBUTIONS:
        raise ValueError(f"distribution: expected one of {', '.join(map(repr, DISTRIBUTIONS))}, "
                         f"got {options['distribution']!r}")


def lp_row_norms(weight, p: float):
    """The l_p norm of each row (output unit) of ``weight``, flattened past the first dimension."""
    return weight.flatten(1).abs().pow(p).sum(1).pow(1 / p)


def draw(shape, *, p: float, R: float, distribution: str, generator):
    """A float32 CPU tensor of ``shape`` whose rows have l_p norm ``R``."""
    import torch

    if distribution == "normal":
        weight = torch.randn(shape, generator=generator)
    else:
        weight = torch.rand(shape, generator=generator) * 2 - 1
    rows = weight.flatten(1)
    norms = lp_row_norms(weight, p).clamp_min(1e-30)  # a zero row is impossible in float32 draws of >= 1 entry
    return (rows * (R / norms)[:, None]).reshape(shape)


def train(ctx: TrainContext) -> dict:
    import torch

    from harness.errors import HarnessError

    flat = [name for name, param in ctx.params.items() if param.dim() < 2]
    if flat:
        raise HarnessError(f"random draws weight matrices row by row; {', '.join(flat)} has no rows; "
                           f"set params = [\"fc1.weight\"]")
    options = ctx.options
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    advance = ctx.progress(len(ctx.params), "random " + ",".join(ctx.params))
    stats = {}
    for name in sorted(ctx.params):  # a fixed order: the draws do not depend on dict order
        param = ctx.params[name]
        weight = draw(tuple(param.shape), p=options["p"], R=options["R"], distribution=options["distribution"],
                      generator=generator)
        with torch.no_grad():
            param.copy_(weight.to(param))
        norms = lp_row_norms(param.detach(), options["p"])
        stats[name] = {"rows": int(param.shape[0]), "norm_min": float(norms.min()), "norm_max": float(norms.max())}
        advance(**{"norm_min": stats[name]["norm_min"], "norm_max": stats[name]["norm_max"]})
    return {"params": stats}


@hookimpl
def harness_register_learners(register):
    register(Learner(name="random", train=train, defaults=DEFAULTS, check=_check,
                     description="frozen random weights, rows scaled to l_p norm R (control for hebbian)"))
