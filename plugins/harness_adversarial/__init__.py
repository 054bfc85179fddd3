"""Learner ``adversarial``: PGD adversarial training (Madry et al., ICLR 2018), the strongest known
defense on MNIST and so the upper reference the Bio net's robustness is measured against.

For each minibatch: craft L-inf PGD examples against the current model with torchattacks
(``torchattacks.PGD(eps, alpha, steps, random_start=True)``), then take one Adam step on the
cross-entropy of the adversarial batch, ``(1 - clean_weight) * CE(adv) + clean_weight * CE(clean)``.
The defaults are Madry's MNIST setting: eps = 0.3, 40 steps of 0.01 from a random start.

``T``: the attack used during training sees logits / T, not the logits. A RePU^4.5 net (beta = 0.01)
has logits so large that the float32 softmax saturates: the cross-entropy gradient w.r.t. the input
is exactly zero for most images (gradient masking), so PGD at T = 1 barely moves and "adversarial"
training degenerates into clean training. For such nets use T ~ 1e5 (the thesis's rescaling, as the
``logit-scale`` defense does at evaluation). The training loss itself always uses the plain logits.
For a ReLU net (power = 1, beta = 1) T = 1 is fine.

Only the stage's parameters are updated: they stop requiring gradients while the attack runs (so
the attack builds no weight gradients and accumulates nothing in ``.grad``), the optimizer holds only
them, and the model is put back in training mode after torchattacks switched it to eval mode.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

from harness import hookimpl
from harness.api import Learner, TrainContext
from harness.kit.measures import accuracy
from harness.kit.optim import adam

DEFAULTS = {"epochs": 10, "lr": 1e-3, "batch_size": 100, "eps": 0.3, "alpha": 0.01, "steps": 40, "T": 1.0,
            "clean_weight": 0.0}


def _check(options: dict) -> None:
    for key in ("epochs", "batch_size", "steps"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")
    for key in ("lr", "alpha", "T"):
        if not (math.isfinite(options[key]) and options[key] > 0):
            raise ValueError(f"{key}: expected a positive number")
    if not 0 < options["eps"] <= 1:
        raise ValueError("eps: expected a number in (0, 1] (L-inf radius on [0, 1] images)")
    if not 0 <= options["clean_weight"] <= 1:
        raise ValueError("clean_weight: expected a number in [0, 1] (share of the clean loss)")


def _scaled(model, T: float):
    """``model`` with logits divided by ``T`` (the module itself when T = 1)."""
    from torch import nn

    if T == 1.0:
        return model

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x) / T

    return Scaled()


@contextmanager
def _frozen(params):
    """Temporarily stop ``params`` from requiring gradients (restored even on error)."""
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def craft(attack, params, x, y):
    """Adversarial examples for (x, y) from a torchattacks attack, without touching the gradients of
    ``params``: they require no gradient while the attack runs."""
    with _frozen(params):
        return attack(x, y).detach()


def train(ctx: TrainContext) -> dict:
    import torch
    import torch.nn.functional as F
    import torchattacks

    options = ctx.options
    model, x, y = ctx.model, ctx.x, ctx.y
    params = list(ctx.params.values())
    optimizer = adam(params, lr=options["lr"])
    attack = torchattacks.PGD(_scaled(model, options["T"]), eps=options["eps"], alpha=options["alpha"],
                              steps=options["steps"], random_start=True)
    attack.set_device(x.device)
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    advance = ctx.progress(options["epochs"], "adversarial " + ",".join(ctx.params))
    clean_weight = options["clean_weight"]
    history = []
    for epoch in range(options["epochs"]):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total_loss = correct = 0.0
        for start in range(0, len(x), options["batch_size"]):
            batch = order[start:start + options["batch_size"]]
            xb, yb = x[batch], y[batch]
            adv = craft(attack, params, xb, yb)       # torchattacks evaluates in eval mode...
            model.train()                             # ...the update runs in training mode
            logits = model(adv)
            loss = F.cross_entropy(logits, yb)
            if clean_weight > 0:
                loss = (1 - clean_weight) * loss + clean_weight * F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch)
            correct += float((logits.argmax(1) == yb).sum())
        if not math.isfinite(total_loss):
            raise FloatingPointError(f"adversarial: loss became {total_loss} in epoch {epoch + 1}; lower lr")
        stats = {"epoch": epoch + 1, "loss": total_loss / len(x), "train_acc": correct / len(x),
                 "test_acc": accuracy(model, ctx.x_test, ctx.y_test)}
        history.append(stats)
        advance(**{k: v for k, v in stats.items() if k != "epoch"})
    model.eval()
    return {"history": history}


@hookimpl
def harness_register_learners(register):
    register(Learner(name="adversarial", train=train, defaults=DEFAULTS, check=_check,
                     description="PGD adversarial training, Adam on the adversarial cross-entropy (Madry 2018)"))
