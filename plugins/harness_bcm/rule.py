"""The BCM rule for H units at once, averaged over a minibatch, in the objective-function form of
Intrator & Cooper (1992, Neural Networks 5: 3-17) with the lateral interactions of Castellani, Intrator,
Shouval & Cooper (1999, Network 10: 111-121).

For a minibatch X [B, D] and weights W [H, D]:
  c      = X W^T, then lateral inhibition of strength s: the activities solve c~_i + s sum_{j != i} c~_j = c_i,
           i.e. c~ = (c - s S 1) / (1 - s) with S = sum_j c_j / (1 - s + s H) (closed form of L^-1 c, L = (1 - s) I + s 1 1^T)
  y      = sigma(c~)                               (sigma: linear, relu or logistic)
  theta  = E[y^2] per unit                         (the sliding modification threshold, a running mean
                                                    over minibatches: theta <- m theta + (1 - m) mean_B y^2)
  phi    = y (y - theta)                           (depression below theta, potentiation above)
  dW     = L^-1 (phi * sigma'(c~))^T X / B          (L^-1 is symmetric: the same closed form on the rows)
  W     += lr_t dW / max|dW|                       (``normalize``: steps of size lr_t, as Krotov & Hopfield's
                                                    rule and the plasticity package take them)

The threshold makes a unit selective: it potentiates on the inputs that drive it above the mean of its
squared response and depresses on the rest, so the weights settle where each unit answers strongly to a
small part of the data. Written by hand: no maintained library implements BCM for torch (Nico Curti's
``plasticity`` package, which has one, is not on PyPI; the package of that name there is an unrelated
NLP client).
"""

from __future__ import annotations

from typing import Callable

import torch

ACTIVATIONS = ("linear", "relu", "logistic")
LR_DECAY = ("linear", "none")


def lateral(c: torch.Tensor, strength: float) -> torch.Tensor:
    """L^-1 applied to each row of ``c`` [B, H]: the activities of units that inhibit each other with
    ``strength`` s in [0, 1); s = 0 leaves ``c`` unchanged."""
    if strength == 0:
        return c
    units = c.shape[1]
    total = c.sum(1, keepdim=True) / (1 - strength + strength * units)
    return (c - strength * total) / (1 - strength)


def activate(c: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma(c) and sigma'(c)."""
    if activation == "linear":
        return c, torch.ones_like(c)
    if activation == "relu":
        return c.clamp_min(0), (c > 0).to(c.dtype)
    y = torch.sigmoid(c)
    return y, y * (1 - y)


def bcm_step(weight: torch.Tensor, theta: torch.Tensor | None, x: torch.Tensor, *, lr: float, activation: str,
             inhibition: float, theta_memory: float, normalize: bool, precision: float = 1e-30) -> torch.Tensor:
    """One minibatch update of ``weight`` [H, D] in place from ``x`` [B, D]; returns the new threshold
    (``theta`` None: start it at this minibatch's mean of y^2)."""
    c = lateral(x @ weight.T, inhibition)
    y, slope = activate(c, activation)
    batch_theta = (y * y).mean(0)
    theta = batch_theta if theta is None else theta_memory * theta + (1 - theta_memory) * batch_theta
    drive = lateral(y * (y - theta) * slope, inhibition)
    update = drive.T @ x / x.shape[0]
    scale = lr / max(float(update.abs().max()), precision) if normalize else lr
    weight.add_(update, alpha=scale)
    return theta


def weight_stats(weight: torch.Tensor, theta: torch.Tensor, y: torch.Tensor) -> dict:
    """norm: mean row norm; theta: mean threshold; selective: mean share of the sample that drives a unit
    above its threshold (small for selective units); silent: share of units that no image of the sample
    drives above zero."""
    above = (y > theta).float().mean(0)
    return {"norm": float(weight.norm(dim=1).mean()), "theta": float(theta.mean()),
            "selective": float(above.mean()), "silent": float(((y > 0).sum(0) == 0).float().mean())}


def train_bcm(weight: torch.Tensor, inputs: torch.Tensor, *, lr: float, epochs: int, batch_size: int,
              activation: str, inhibition: float, theta_memory: float, normalize: bool, lr_decay: str,
              init_std: float, seed: int, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(0, init_std) and train it in place on the rows of ``inputs``; returns
    per-epoch stats. Raises FloatingPointError on divergence."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if lr_decay not in LR_DECAY:
        raise ValueError(f"lr_decay: expected one of {', '.join(LR_DECAY)}, got {lr_decay!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_((torch.randn(weight.shape, generator=generator) * init_std).to(weight))
    inputs = inputs.flatten(1).to(weight)
    n = len(inputs)
    sample = inputs[torch.randperm(n, generator=generator)[:1000].to(inputs.device)]
    theta = None
    history = []
    for epoch in range(epochs):
        rate = lr * (1 - epoch / epochs) if lr_decay == "linear" else lr
        order = torch.randperm(n, generator=generator).to(weight.device)
        for start in range(0, n, batch_size):
            theta = bcm_step(weight, theta, inputs[order[start:start + batch_size]], lr=rate, activation=activation,
                             inhibition=inhibition, theta_memory=theta_memory, normalize=normalize)
        if not (torch.isfinite(weight).all() and torch.isfinite(theta).all()):
            raise FloatingPointError(f"bcm: NaN or inf in the weights after epoch {epoch + 1}; lower lr (now {lr}) "
                                     f"or set normalize = true")
        y, _ = activate(lateral(sample @ weight.T, inhibition), activation)
        stats = {"epoch": epoch + 1, **weight_stats(weight, theta, y)}
        history.append(stats)
        if on_epoch is not None:
            on_epoch({k: v for k, v in stats.items() if k != "epoch"})
    return history
