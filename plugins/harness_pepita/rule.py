"""PEPITA for a network with one hidden layer, written from the paper (Dellaferrera & Kreiman, "Error-driven
input modulation: solving the credit assignment problem without a backward pass", ICML 2022). No maintained
library implements it, so this module is the implementation; no code was taken from elsewhere.

Per minibatch, with h0 the input of the first layer (what it receives inside the model), h1 the hidden
activity, y the network's output and t the one-hot target:

1. standard pass:   h1 = sigma(W1 h0),        e = softmax(y) - t
2. modulated pass:  h0' = h0 + F e,  h1' = sigma(W1 h0'),  e' = softmax(y') - t
3. updates:         dW1 = (h1 - h1') h0'^T,   dW2 = e' h1'^T      (averaged over the minibatch)

F [D, classes] is fixed and random. The weights move by momentum descent, v = gamma v + lr dW, W -= v. Both
passes share one dropout mask on the hidden units. Nothing is differentiated: every step runs under
``torch.no_grad()``; the forward passes are the model's own (``forward_from``), so whatever activation
and output scale the model has are the ones PEPITA sees.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def he_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)) for a [out, in] matrix (He et al. 2015, uniform form)."""
    limit = math.sqrt(6.0 / shape[1])
    return (torch.rand(shape, generator=generator) * 2 - 1) * limit


def feedback_matrix(inputs: int, classes: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """F [inputs, classes]: scale * U(-sqrt(6 / inputs), +sqrt(6 / inputs))."""
    limit = math.sqrt(6.0 / inputs)
    return (torch.rand((inputs, classes), generator=generator) * 2 - 1) * limit * scale


class TwoPasses:
    """Runs the model from its first layer's input and reads the hidden activity on the way: a forward
    pre-hook on the output layer records what it receives (after the dropout mask, when one is set)."""

    def __init__(self, model, first: str, last: str):
        self.model, self.first = model, first
        self.mask = None
        self.hidden = None
        self._handle = model.get_submodule(last).register_forward_pre_hook(self._hook)

    def _hook(self, _module, args):
        h = args[0] if self.mask is None else args[0] * self.mask
        self.hidden = h
        return (h, *args[1:])

    def __call__(self, h0):
        logits = self.model.forward_from(self.first, h0)
        return self.hidden, logits

    def close(self) -> None:
        self._handle.remove()


def pepita_step(passes: TwoPasses, w1: torch.Tensor, w2: torch.Tensor, velocity: list[torch.Tensor],
                h0: torch.Tensor, target: torch.Tensor, feedback: torch.Tensor, lr: float,
                momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One PEPITA update of ``w1`` [H, D] and ``w2`` [C, H] in place on the minibatch ``h0`` [B, D] with
    one-hot ``target`` [B, C]; returns the standard pass's logits and its error."""
    h1, logits = passes(h0)
    error = logits.softmax(1) - target
    modulated = h0 + error @ feedback.T
    h1_mod, logits_mod = passes(modulated)
    error_mod = logits_mod.softmax(1) - target
    batch = len(h0)
    updates = ((h1 - h1_mod).T @ modulated / batch, error_mod.T @ h1_mod / batch)
    for weight, v, update in zip((w1, w2), velocity, updates):
        v.mul_(momentum).add_(update, alpha=lr)
        weight.sub_(v)
    return logits, error


def train_pepita(model, first: str, last: str, h0_all: torch.Tensor, y: torch.Tensor, *, classes: int,
                 lr: float, momentum: float, epochs: int, batch_size: int, decay_epochs: list[int],
                 decay_factor: float, dropout: float, feedback_scale: float, init: str, seed: int,
                 evaluate: Callable[[], float] | None = None,
                 on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model``'s ``first``.weight and ``last``.weight in place on the first layer's inputs
    ``h0_all`` [N, D] and labels ``y``. Random draws, in order, from one CPU generator seeded with
    ``seed``: the initial W1 and W2 (``init = "he-uniform"``), F, then per epoch the minibatch order and
    per minibatch the dropout mask. Raises FloatingPointError when the weights stop being finite."""
    w1 = model.get_submodule(first).weight
    w2 = model.get_submodule(last).weight
    device = w1.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    history = []
    passes = TwoPasses(model, first, last)
    try:
        with torch.no_grad():
            if init == "he-uniform":
                w1.copy_(he_uniform(tuple(w1.shape), generator))
                w2.copy_(he_uniform(tuple(w2.shape), generator))
            feedback = feedback_matrix(w1.shape[1], classes, feedback_scale, generator).to(device, w1.dtype)
            velocity = [torch.zeros_like(w1), torch.zeros_like(w2)]
            targets = F.one_hot(y, classes).to(w1.dtype)
            rate = lr
            for epoch in range(epochs):
                if epoch in decay_epochs:
                    rate *= decay_factor
                model.train()
                order = torch.randperm(len(h0_all), generator=generator).to(device)
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                for start in range(0, len(order), batch_size):
                    batch = order[start:start + batch_size]
                    if dropout > 0:
                        keep = torch.rand((len(batch), w1.shape[0]), generator=generator) >= dropout
                        passes.mask = (keep.to(device, w1.dtype) / (1 - dropout))
                    logits, _ = pepita_step(passes, w1, w2, velocity, h0_all[batch], targets[batch], feedback,
                                            rate, momentum)
                    loss_sum += F.cross_entropy(logits, y[batch], reduction="sum")
                    correct += (logits.argmax(1) == y[batch]).sum()
                passes.mask = None
                model.eval()
                if not (torch.isfinite(w1).all() and torch.isfinite(w2).all()):
                    raise FloatingPointError(f"pepita: NaN or inf in the weights after epoch {epoch + 1}; "
                                             f"lower lr (now {rate}) or feedback_scale ({feedback_scale})")
                stats = {"epoch": epoch + 1, "lr": rate, "loss": float(loss_sum) / len(order),
                         "train_acc": float(correct) / len(order)}
                if evaluate is not None:
                    stats["test_acc"] = evaluate()
                history.append(stats)
                if on_epoch is not None:
                    on_epoch({k: v for k, v in stats.items() if k not in ("epoch", "lr")})
    finally:
        passes.close()
        model.eval()
    return history
