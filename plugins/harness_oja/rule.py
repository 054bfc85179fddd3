"""Oja-type Hebbian updates for H units at once, averaged over a minibatch.

For a minibatch X [B, D] and weights W [H, D], Y = X W^T [B, H]:
  sanger     dW = lr * (Y^T X - LT(Y^T Y) W) / B     (Sanger 1989, the generalized Hebbian algorithm)
  subspace   dW = lr * (Y^T X - Y^T Y W) / B         (Oja 1989, the symmetric subspace rule)
LT keeps the lower triangle including the diagonal: unit i is decorrelated from units 1..i only, so
the units converge in order to the leading eigenvectors of E[x x^T]. With one unit both are Oja's
rule (1982), dw = lr * y (x - y w).

LT(Y^T Y) W would cost H^2 D per step (3 GFLOP for 2000 x 784); it is computed by blocks of units:
for the block I, LT(Y^T Y)_I W = Y_I^T (sum over earlier blocks J of Y_J W_J) + tril(Y_I^T Y_I) W_I,
with the running sum over earlier blocks kept as one [B, D] tensor, i.e. about 3 B H D per step.
"""

from __future__ import annotations

from typing import Callable

import torch

VARIANTS = ("sanger", "subspace")


def decay_term(weight: torch.Tensor, y: torch.Tensor, variant: str, block: int = 128) -> torch.Tensor:
    """LT(Y^T Y) W (``sanger``) or Y^T Y W (``subspace``), summed (not averaged) over the batch."""
    if variant == "subspace":
        return y.T @ (y @ weight)
    out = torch.empty_like(weight)
    explained = weight.new_zeros(y.shape[0], weight.shape[1])  # sum_{j before block} y_j w_j, [B, D]
    for start in range(0, weight.shape[0], block):
        rows = slice(start, start + block)
        yb, wb = y[:, rows], weight[rows]
        out[rows] = yb.T @ explained + torch.tril(yb.T @ yb) @ wb
        explained += yb @ wb
    return out


def oja_step(weight: torch.Tensor, x: torch.Tensor, lr: float, variant: str) -> None:
    """One minibatch-averaged update of ``weight`` [H, D] in place; ``x`` is [B, D]."""
    y = x @ weight.T
    update = y.T @ x - decay_term(weight, y, variant)
    weight.add_(update, alpha=lr / x.shape[0])


def weight_stats(weight: torch.Tensor, lead: int = 50) -> dict:
    """norm_dev: mean |row norm - 1| and offdiag: max |(W W^T)_ij|, i != j, over the first ``lead``
    units (those that converge first); dead: share of all rows with norm below 0.1."""
    norms = weight.norm(dim=1)
    first = weight[:lead]
    gram = first @ first.T
    offdiag = (gram - torch.diag(gram.diagonal())).abs().max() if len(first) > 1 else gram.new_zeros(())
    return {"norm_dev": float((norms[:lead] - 1).abs().mean()), "offdiag": float(offdiag),
            "dead": float((norms < 0.1).float().mean())}


def train_oja(weight: torch.Tensor, inputs: torch.Tensor, *, variant: str, lr: float, epochs: int,
              batch_size: int, init_std: float, center: bool, seed: int,
              on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(0, init_std) and train it in place on the rows of ``inputs`` (centred
    first when ``center``); returns per-epoch stats. Raises FloatingPointError on divergence."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_((torch.randn(weight.shape, generator=generator) * init_std).to(weight))
    inputs = inputs.flatten(1).to(weight)
    if center:
        inputs = inputs - inputs.mean(0)
    n = len(inputs)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(weight.device)
        for start in range(0, n, batch_size):
            oja_step(weight, inputs[order[start:start + batch_size]], lr, variant)
        if not torch.isfinite(weight).all():
            raise FloatingPointError(f"oja ({variant}): NaN or inf in the weights after epoch {epoch + 1}; "
                                     f"lower lr (now {lr}; lr times the largest eigenvalue of the input "
                                     f"covariance must stay well below 1) or check the inputs")
        stats = {"epoch": epoch + 1, **weight_stats(weight)}
        history.append(stats)
        if on_epoch is not None:
            on_epoch({k: v for k, v in stats.items() if k != "epoch"})
    return history
