"""The SoftHebb update, vectorised over a minibatch.

For a minibatch X [B, D] and weights W [H, D] (one row per unit):
  currents     U = X W^T                                        [B, H]
  soft WTA     Y = softmax(U / tau) over the units               [B, H]
  anti-Hebbian (option) every unit but the winner argmax_k U_bk gets -Y_bk instead of Y_bk
  update       dW_k = mean over b of  Y_bk (x_b - U_bk W_k)      i.e. (Y^T X - diag(sum_b Y_bk U_bk) W) / B
  step         W_k += lr_k dW_k, with lr_k = lr (or lr * |‖W_k‖ - 1|^0.5 with ``norm_lr``)

The plastic rule is SoftHebb's, from Moraitis et al. (2022), "SoftHebb: Bayesian inference in
unsupervised Hebbian soft winner-take-all networks", Neuromorph. Comput. Eng. 2 044017:
Δw_ik = η y_k (x_i − u_k w_ik) with y = softmax(u / τ), u_k = w_k · x. Its fixed points have
‖w_k‖ = 1 (the Oja-like decay term), which the per-epoch ``norm_dev`` statistic tracks. The paper's
plastic biases (the units' log-priors) are left out: the layers this learner trains have no bias,
which is SoftHebb with a uniform prior over the units. The anti-Hebbian sign for non-winners and the
weight-norm-dependent rate lr · |‖w_k‖ − 1|^0.5 are from Journé et al. (ICLR 2023), "Hebbian deep
learning without feedback" (their multilayer SoftHebb); both are off by default.

Random draws, in order, from one CPU ``torch.Generator`` seeded with ``seed``: the initial weights
``init_std * randn(W.shape)``, then one ``randperm(N)`` per epoch giving the minibatch order.
"""

from __future__ import annotations

from typing import Callable

import torch


def soft_wta(currents: torch.Tensor, temperature: float, anti_hebbian: bool) -> torch.Tensor:
    """Post-synaptic activations [B, H] of the plasticity rule for currents [B, H]."""
    y = torch.softmax(currents / temperature, dim=1)
    if anti_hebbian:
        winners = currents.argmax(dim=1, keepdim=True)
        y = (-y).scatter(1, winners, y.gather(1, winners))
    return y


def softhebb_step(weight: torch.Tensor, x: torch.Tensor, *, lr: float, temperature: float,
                  anti_hebbian: bool = False, norm_lr: bool = False) -> torch.Tensor:
    """One minibatch update of ``weight`` [H, D] in place from inputs ``x`` [B, D]; returns each
    input's winner (the unit with the largest current), for the statistics."""
    currents = x @ weight.T                                          # [B, H]
    y = soft_wta(currents, temperature, anti_hebbian)
    update = (y.T @ x - (y * currents).sum(0)[:, None] * weight) / x.shape[0]
    if norm_lr:
        rate = lr * (weight.norm(dim=1, keepdim=True) - 1).abs().add_(1e-10).sqrt_()
        weight.add_(rate * update)
    else:
        weight.add_(update, alpha=lr)
    return currents.argmax(dim=1)


def train_softhebb(weight: torch.Tensor, inputs: torch.Tensor, *, lr: float, epochs: int, batch_size: int,
                   temperature: float, init_std: float, seed: int, anti_hebbian: bool = False,
                   norm_lr: bool = False, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(0, init_std) and train it in place on the rows of ``inputs``;
    returns per-epoch statistics:

    * ``norm_dev``: mean over units of |‖W_k‖ − 1| (SoftHebb's fixed points have unit norm);
    * ``never_won``: units that have not yet been the winner (largest current) of any input;
    * ``winner_changes``: share of inputs whose winner differs from the previous epoch's;
    * ``entropy``: mean entropy (nats) of the soft WTA over the training inputs, at the epoch's
      end: log(H) is uniform, 0 is a hard winner.

    Raises FloatingPointError when the weights stop being finite."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_((torch.randn(weight.shape, generator=generator) * init_std).to(weight))
    inputs = inputs.flatten(1).to(weight)
    hidden, n = weight.shape[0], len(inputs)
    won = torch.zeros(hidden, dtype=torch.bool, device=weight.device)
    winner = torch.full((n,), -1, dtype=torch.long, device=weight.device)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(weight.device)
        previous = winner.clone()
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            winner[batch] = softhebb_step(weight, inputs[batch], lr=lr, temperature=temperature,
                                          anti_hebbian=anti_hebbian, norm_lr=norm_lr)
        if not torch.isfinite(weight).all():
            raise FloatingPointError(f"softhebb: NaN or inf in the weights after epoch {epoch + 1}; lower lr "
                                     f"(now {lr}: lr times the largest squared input norm must stay below ~1) "
                                     f"or use inputs = \"unit\"")
        won[winner] = True
        stats = {"epoch": epoch + 1, "norm_dev": float((weight.norm(dim=1) - 1).abs().mean()),
                 "never_won": int((~won).sum()),
                 "winner_changes": float((winner != previous).float().mean()) if epoch else 1.0,
                 "entropy": mean_entropy(weight, inputs, temperature)}
        history.append(stats)
        if on_epoch is not None:
            on_epoch({key: value for key, value in stats.items() if key != "epoch"})
    return history


def mean_entropy(weight: torch.Tensor, inputs: torch.Tensor, temperature: float, chunk: int = 4096) -> float:
    """Mean entropy of softmax(x W^T / tau) over the rows of ``inputs``."""
    total = 0.0
    for start in range(0, len(inputs), chunk):
        logp = torch.log_softmax(inputs[start:start + chunk] @ weight.T / temperature, dim=1)
        total += float(-(logp.exp() * logp).sum())
    return total / len(inputs)
