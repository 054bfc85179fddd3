"""The Krotov-Hopfield update, vectorised over a minibatch.

For a minibatch X [B, D] and weights W [H, D]:
  currents  I = X @ (sign(W) |W|^(p-1))^T                     [B, H]
  ranking   per input, the unit with the largest current gets g = +1, the k-th largest g = -delta
  update    dW_i = sum_b g_ib (R^p x_b - I_bi W_i),  W += eps * dW / max|dW|
with eps decaying linearly from eps0 to 0 over the epochs (R = 1, as in the reference code).

Only 2B rows of g are non-zero, so the update touches only the units that won or came k-th in this
minibatch: it is computed on those rows alone (index_add), not as a dense [H, B] @ [B, D] product.
"""

from __future__ import annotations

from typing import Callable

import torch


def currents(weight: torch.Tensor, x: torch.Tensor, p: float) -> torch.Tensor:
    weighted = weight if p == 2 else weight.sign() * weight.abs().pow(p - 1)
    return x @ weighted.T


def hebbian_step(weight: torch.Tensor, x: torch.Tensor, p: float, k: int, delta: float, lr: float,
                 precision: float) -> torch.Tensor:
    """One minibatch update of ``weight`` in place. Returns the winning unit of each input."""
    batch = x.shape[0]
    current = currents(weight, x, p)                                 # [B, H]
    ranked = current.topk(k, dim=1).indices                          # [B, k], largest first
    units = torch.cat([ranked[:, 0], ranked[:, k - 1]])              # [2B]
    coef = torch.cat([x.new_ones(batch), x.new_full((batch,), -delta)])
    unit_current = torch.cat([current.gather(1, ranked[:, :1]), current.gather(1, ranked[:, k - 1:k])]).squeeze(1)
    touched, slot = units.unique(return_inverse=True)
    hebb = x.new_zeros(len(touched), x.shape[1]).index_add_(0, slot, coef[:, None] * torch.cat([x, x]))
    decay = x.new_zeros(len(touched)).index_add_(0, slot, coef * unit_current)
    update = hebb - decay[:, None] * weight[touched]
    norm = update.abs().max().clamp_min(precision)
    weight[touched] += (lr / norm) * update
    return ranked[:, 0]


def train_hebbian(weight: torch.Tensor, inputs: torch.Tensor, *, p: float, k: int, delta: float, lr: float,
                  epochs: int, batch_size: int, init_mean: float, init_std: float, precision: float,
                  seed: int, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(init_mean, init_std) and train it in place; returns per-epoch stats."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_(torch.normal(init_mean, init_std, weight.shape, generator=generator).to(weight))
    inputs = inputs.to(weight)
    hidden, n = weight.shape[0], len(inputs)
    history = []
    for epoch in range(epochs):
        eps = lr * (1 - epoch / epochs)
        order = torch.randperm(n, generator=generator).to(weight.device)
        wins = torch.zeros(hidden, dtype=torch.long, device=weight.device)
        for start in range(0, n, batch_size):
            winners = hebbian_step(weight, inputs[order[start:start + batch_size]], p, k, delta, eps, precision)
            wins += torch.bincount(winners, minlength=hidden)
        if not torch.isfinite(weight).all():
            raise FloatingPointError(f"hebbian: NaN or inf in the weights after epoch {epoch + 1}; "
                                     f"lower lr (now {lr}) or check the inputs")
        norms = weight.abs().pow(p).sum(1).pow(1 / p)
        won = wins > 0
        stats = {"epoch": epoch + 1, "lr": eps, "units_won": float(won.float().mean()),
                 "norm_dev": float((norms[won] - 1).abs().mean()) if won.any() else float("nan")}
        history.append(stats)
        if on_epoch is not None:
            on_epoch({k: v for k, v in stats.items() if k != "epoch"})
    return history
