"""The Krotov-Hopfield update, vectorised over a minibatch.

For a minibatch X [B, D] and weights W [H, D]:
  currents  I = X @ (sign(W) |W|^(p-1))^T                     [B, H]
  ranking   per input, the unit with the largest current gets g = +1, the k-th largest g = -delta
            (``anti_hebbian = "ranks"``: every unit ranked 2..k gets -delta)
  update    dW_i = sum_b g_ib (R^p x_b - I_bi W_i),  W += eps * dW / max|dW|
with eps decaying linearly from eps0 to 0 over the epochs (``lr_decay = "constant"`` keeps eps0).

``currents = "thesis-appendix"`` replaces the weighting by ``W*|W|**p - 2``: the thesis's appendix code
writes that (an operator-precedence slip for ``W*|W|**(p-2)``; with p = 2 it is W^3 - 2, not W).
It is offered only to reproduce the thesis's numbers.

Speed: per input only 2 units (k in the ranks variant) receive a non-zero g, so on the CPU the
update is computed on the touched rows alone (index_add), never as a dense [H, B] @ [B, D] product,
and the weighted matrix sign(W)|W|^(p-1) is refreshed only on those rows. What remains is one
[B, D] @ [D, H] product per minibatch: the FLOP floor of the rule. On a GPU the sparse path's
``unique`` forces a host sync every minibatch, which costs more than the arithmetic; there the update
is the dense product on device (``method = "dense"``), with no sync until the epoch ends. A minibatch
of 100 is far too small to keep a GPU busy, so the dense path spends its time launching ~20 small
kernels per step; ``method = "graph"`` (the CUDA default) records one whole epoch of dense steps as a
CUDA graph once and replays it every epoch: the same kernels in the same order, launched at once.

Random draws, in order, from one CPU ``torch.Generator`` seeded with ``seed``: the initial weights
``torch.normal(init_mean, init_std, W.shape)``, then one ``torch.randperm(N)`` per epoch giving the
minibatch order. tests/test_hebbian.py replays exactly these draws through a plain transcription of
the published rule.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

CURRENTS = ("published", "thesis-appendix")
ANTI_HEBBIAN = ("kth", "ranks")
LR_DECAY = ("linear", "constant")


def weighting(weight: torch.Tensor, p: float, currents: str = "published") -> torch.Tensor:
    """The matrix whose product with an input gives the units' currents."""
    if currents == "thesis-appendix":
        return weight * weight.abs().pow(p) - 2
    if p == 2:
        return weight.clone()
    if p == 3:  # sign(W)|W|^2 = W|W|: a multiply instead of a pow
        return weight * weight.abs()
    return weight.sign() * weight.abs().pow(p - 1)


def hebbian_step(weight: torch.Tensor, weighted: torch.Tensor, x: torch.Tensor, *, p: float, k: int,
                 delta: float, lr: float, precision: float, R: float = 1.0, anti_hebbian: str = "kth",
                 currents: str = "published") -> torch.Tensor:
    """One minibatch update of ``weight`` (and its ``weighted`` twin) in place; returns the winners."""
    # [H, B]: the FLOP floor. This orientation runs ~25 % faster than x @ weighted.T on MKL here.
    current = weighted @ x.T
    value, ranked = current.topk(k, dim=0)                           # [k, B], largest first
    value, ranked = value.T, ranked.T
    first = 1 if anti_hebbian == "ranks" else k - 1                  # losers: ranks first+1..k
    width = k - first
    units = torch.cat([ranked[:, 0], ranked[:, first:].T.reshape(-1)])
    touched, slot = units.unique(return_inverse=True)
    batch = x.shape[0]
    hebb = x.new_zeros(len(touched), x.shape[1]).index_add_(0, slot[:batch], x)
    for rank in range(width):  # -delta x for every anti-Hebbian rank, without copying x
        hebb.index_add_(0, slot[batch * (rank + 1):batch * (rank + 2)], x, alpha=-delta)
    unit_current = torch.cat([value[:, 0], value[:, first:].T.reshape(-1)])
    unit_current[batch:] *= -delta
    decay = x.new_zeros(len(touched)).index_add_(0, slot, unit_current)
    rows = weight[touched]
    update = hebb.mul_(R ** p) if R != 1.0 else hebb
    update.sub_(decay[:, None] * rows)
    largest = float(torch.linalg.vector_norm(update, ord=float("inf")))  # max |dW| in one pass
    rows.add_(update, alpha=lr / max(largest, precision))
    weight[touched] = rows
    weighted[touched] = weighting(rows, p, currents)
    return ranked[:, 0]


def hebbian_step_dense(weight: torch.Tensor, weighted: torch.Tensor, x: torch.Tensor, *, p: float, k: int,
                       delta: float, lr: float, precision: float, R: float = 1.0, anti_hebbian: str = "kth",
                       currents: str = "published") -> torch.Tensor:
    """The same update as :func:`hebbian_step` through dense [H, B] products: no data-dependent
    shapes, so a GPU never waits for the host."""
    current = x @ weighted.T                                         # [B, H]
    ranked = current.topk(k, dim=1).indices
    g = torch.zeros_like(current)
    g.scatter_(1, ranked[:, k - 1:] if anti_hebbian == "kth" else ranked[:, 1:], -delta)
    g.scatter_(1, ranked[:, :1], 1.0)
    update = (R ** p) * (g.T @ x) - (g * current).sum(0)[:, None] * weight
    weight.add_(update * (lr / update.abs().max().clamp_min(precision)))
    weighted.copy_(weighting(weight, p, currents))
    return ranked[:, 0]


STEPS = {"sparse": hebbian_step, "dense": hebbian_step_dense}
METHODS = (*STEPS, "graph")


def _epoch_runner(step, weight, weighted, inputs, winner, batch_size, step_options):
    """``run(order, lr)``: one epoch of ``step`` over ``inputs`` in the given order."""
    def run(order, lr):
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            winner[batch] = step(weight, weighted, inputs[batch], lr=lr, **step_options)
    return run


def _graph_epoch_runner(weight, weighted, inputs, winner, batch_size, step_options):
    """The dense epoch captured as a CUDA graph; ``order`` and ``lr`` live in static device tensors
    that each replay reads. Returns None (and leaves every tensor as it was) when capture fails."""
    order_static = torch.zeros(len(inputs), dtype=torch.long, device=weight.device)
    lr_static = torch.zeros((), dtype=weight.dtype, device=weight.device)
    eager = _epoch_runner(hebbian_step_dense, weight, weighted, inputs, winner, batch_size, step_options)
    saved = [t.clone() for t in (weight, weighted, winner)]
    graph = torch.cuda.CUDAGraph()
    try:
        side = torch.cuda.Stream()  # capture needs its kernels (cuBLAS handles, ...) warmed up first
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            hebbian_step_dense(weight, weighted, inputs[:batch_size], lr=lr_static, **step_options)
        torch.cuda.current_stream().wait_stream(side)
        for tensor, value in zip((weight, weighted, winner), saved):
            tensor.copy_(value)
        with torch.cuda.graph(graph):
            eager(order_static, lr_static)
    except RuntimeError:
        torch.cuda.synchronize()
        for tensor, value in zip((weight, weighted, winner), saved):
            tensor.copy_(value)
        return None

    def run(order, lr):
        order_static.copy_(order)
        lr_static.fill_(lr)
        graph.replay()
    return run


def train_hebbian(weight: torch.Tensor, inputs: torch.Tensor, *, p: float, k: int, delta: float, lr: float,
                  epochs: int, batch_size: int, init_mean: float, init_std: float, precision: float,
                  seed: int, R: float = 1.0, lr_decay: str = "linear", anti_hebbian: str = "kth",
                  currents: str = "published", method: str = "auto",
                  on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(init_mean, init_std) and train it in place (``method``: "sparse",
    "dense", "graph" (CUDA only), or "auto" = graph on CUDA, sparse elsewhere); returns per-epoch stats:
    ``norm_dev`` mean |‖W_i‖_p − R| over units, ``never_won`` units that have not won any input yet,
    ``winner_changes`` share of inputs whose winning unit differs from the previous epoch's."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_(torch.normal(init_mean, init_std, weight.shape, generator=generator).to(weight))
    inputs = inputs.to(weight)
    weighted = weighting(weight, p, currents)
    hidden, n = weight.shape[0], len(inputs)
    if method == "auto":
        method = "graph" if weight.is_cuda else "sparse"
    if method == "graph" and not weight.is_cuda:
        raise ValueError("method = \"graph\" needs the weights on a CUDA device; use \"sparse\" on the CPU")
    won = torch.zeros(hidden, dtype=torch.bool, device=weight.device)
    winner = torch.full((n,), -1, dtype=torch.long, device=weight.device)
    step_options = dict(p=p, k=k, delta=delta, precision=precision, R=R, anti_hebbian=anti_hebbian,
                        currents=currents)
    run_epoch = None
    if method == "graph":
        run_epoch = _graph_epoch_runner(weight, weighted, inputs, winner, batch_size, step_options)
        if run_epoch is None:
            warnings.warn("hebbian: CUDA graph capture failed; running the dense steps one by one")
    if run_epoch is None:
        step = STEPS["dense" if method == "graph" else method]
        run_epoch = _epoch_runner(step, weight, weighted, inputs, winner, batch_size, step_options)
    history = []
    for epoch in range(epochs):
        eps = lr * (1 - epoch / epochs) if lr_decay == "linear" else lr
        order = torch.randperm(n, generator=generator).to(weight.device)
        previous = winner.clone()
        run_epoch(order, eps)
        if not torch.isfinite(weight).all():
            raise FloatingPointError(f"hebbian: NaN or inf in the weights after epoch {epoch + 1}; "
                                     f"lower lr (now {lr}) or check the inputs")
        won[winner] = True
        norms = weight.abs().pow(p).sum(1).pow(1 / p)
        stats = {"epoch": epoch + 1, "lr": eps, "norm_dev": float((norms - R).abs().mean()),
                 "never_won": int((~won).sum()),
                 "winner_changes": float((winner != previous).float().mean()) if epoch else 1.0}
        history.append(stats)
        if on_epoch is not None:
            on_epoch({key: value for key, value in stats.items() if key != "epoch"})
    return history
