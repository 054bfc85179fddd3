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

``ranking_dtype = "bf16"`` (opt-in, never the default) ranks the units on currents computed in bfloat16
from a bf16 twin of the weighted matrix: on CPUs with AMX or AVX512-BF16 (and on GPUs) that product
runs 3-4x faster than in float32. Only the ranking sees bf16: the weights stay float32, and the
currents that enter the update (those of the units that won or came k-th) are recomputed exactly in
float32 for those units alone. Near-ties may then rank differently than in float32; bench/hebbian.py
measures how often.

Random draws, in order, from one CPU ``torch.Generator`` seeded with ``seed``: the initial weights
``torch.normal(init_mean, init_std, W.shape)``, then one ``torch.randperm(N)`` per epoch giving the
minibatch order. tests/plugins/hebbian/test_hebbian.py replays exactly these draws through a plain transcription of
the published rule.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

CURRENTS = ("published", "thesis-appendix")
ANTI_HEBBIAN = ("kth", "ranks")
LR_DECAY = ("linear", "constant")
RANKING_DTYPES = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively (CPU: AMX or AVX512-BF16; CUDA: compute >= 8.0)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


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
                 currents: str = "published", ranking: torch.Tensor | None = None) -> torch.Tensor:
    """One minibatch update of ``weight`` (and its ``weighted`` twin) in place; returns the winners.
    ``ranking``: a bf16 copy of ``weighted`` to rank the units with (kept in step here), or None."""
    first = 1 if anti_hebbian == "ranks" else k - 1                  # losers: ranks first+1..k
    width = k - first
    if ranking is None:
        # [H, B]: the FLOP floor. This orientation runs ~25 % faster than x @ weighted.T on MKL here.
        value, ranked = (weighted @ x.T).topk(k, dim=0)              # [k, B], largest first
        value, ranked = value.T, ranked.T
    else:
        ranked = (ranking @ x.to(ranking.dtype).T).topk(k, dim=0).indices.T
        # the float32 currents of the units the update touches, for those units alone
        chosen = torch.cat([ranked[:, :1], ranked[:, first:]], dim=1)                # [B, 1 + width]
        rows = weighted.index_select(0, chosen.reshape(-1)).view(*chosen.shape, -1)  # [B, 1 + width, D]
        exact = torch.bmm(rows, x[:, :, None]).squeeze(2)
        value = exact.new_zeros(len(exact), k)
        value[:, :1], value[:, first:] = exact[:, :1], exact[:, 1:]
    units = torch.cat([ranked[:, 0], ranked[:, first:].T.reshape(-1)])
    touched, slot = units.unique(return_inverse=True)
    batch = x.shape[0]
    hebb = x.new_zeros(len(touched), x.shape[1]).index_add_(0, slot[:batch], x)
    for rank in range(width):  # -delta x for every anti-Hebbian rank, without copying x
        hebb.index_add_(0, slot[batch * (rank + 1):batch * (rank + 2)], x, alpha=-delta)
    unit_current = torch.cat([value[:, 0], value[:, first:].T.reshape(-1)])
    unit_current[batch:] *= -delta
    decay = x.new_zeros(len(touched)).index_add_(0, slot, unit_current)
    # index_select / index_copy_: several times faster than weight[touched] on the CPU
    rows = weight.index_select(0, touched)
    update = hebb.mul_(R ** p) if R != 1.0 else hebb
    update.sub_(decay[:, None] * rows)
    largest = float(torch.linalg.vector_norm(update, ord=float("inf")))  # max |dW| in one pass
    rows.add_(update, alpha=lr / max(largest, precision))
    weight.index_copy_(0, touched, rows)
    rows = weighting(rows, p, currents)
    weighted.index_copy_(0, touched, rows)
    if ranking is not None:
        ranking.index_copy_(0, touched, rows.to(ranking.dtype))
    return ranked[:, 0]


def hebbian_step_dense(weight: torch.Tensor, weighted: torch.Tensor, x: torch.Tensor, *, p: float, k: int,
                       delta: float, lr: float, precision: float, R: float = 1.0, anti_hebbian: str = "kth",
                       currents: str = "published", ranking: torch.Tensor | None = None) -> torch.Tensor:
    """The same update as :func:`hebbian_step` through dense [H, B] products: no data-dependent
    shapes, so a GPU never waits for the host."""
    if ranking is None:
        current = x @ weighted.T                                     # [B, H]
        ranked = current.topk(k, dim=1).indices
    else:  # rank in bf16; the update needs float32 currents only where g != 0, which g * current keeps
        ranked = (x.to(ranking.dtype) @ ranking.T).topk(k, dim=1).indices
        current = torch.bmm(weighted[ranked], x[:, :, None]).squeeze(2)  # [B, k]
        current = torch.zeros(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device).scatter_(
            1, ranked, current)
    g = torch.zeros_like(current)
    g.scatter_(1, ranked[:, k - 1:] if anti_hebbian == "kth" else ranked[:, 1:], -delta)
    g.scatter_(1, ranked[:, :1], 1.0)
    update = (R ** p) * (g.T @ x) - (g * current).sum(0)[:, None] * weight
    weight.add_(update * (lr / update.abs().max().clamp_min(precision)))
    weighted.copy_(weighting(weight, p, currents))
    if ranking is not None:
        ranking.copy_(weighted)
    return ranked[:, 0]


STEPS = {"sparse": hebbian_step, "dense": hebbian_step_dense}
METHODS = (*STEPS, "graph", "fused")


def resolve_method(method: str, device: torch.device, ranking_dtype: str = "fp32") -> str:
    """The step ``method = "auto"`` runs: on CUDA "graph"; on the CPU "fused" (harness_hebbian.fused,
    when numba is installed and the ranking is float32), else "sparse". Other values pass through."""
    if method != "auto":
        return method
    if device.type == "cuda":
        return "graph"
    from harness_hebbian.fused import AVAILABLE

    return "fused" if AVAILABLE and ranking_dtype == "fp32" else "sparse"


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
    ranking = step_options.get("ranking")
    order_static = torch.zeros(len(inputs), dtype=torch.long, device=weight.device)
    lr_static = torch.zeros((), dtype=weight.dtype, device=weight.device)
    eager = _epoch_runner(hebbian_step_dense, weight, weighted, inputs, winner, batch_size, step_options)
    kept = tuple(t for t in (weight, weighted, winner, ranking) if t is not None)
    saved = [t.clone() for t in kept]
    graph = torch.cuda.CUDAGraph()
    try:
        side = torch.cuda.Stream()  # capture needs its kernels (cuBLAS handles, ...) warmed up first
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            hebbian_step_dense(weight, weighted, inputs[:batch_size], lr=lr_static, **step_options)
        torch.cuda.current_stream().wait_stream(side)
        for tensor, value in zip(kept, saved):
            tensor.copy_(value)
        with torch.cuda.graph(graph):
            eager(order_static, lr_static)
    except RuntimeError:
        torch.cuda.synchronize()
        for tensor, value in zip(kept, saved):
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
                  currents: str = "published", method: str = "auto", ranking_dtype: str = "fp32",
                  on_epoch: Callable[[dict], None] | None = None, stop: int | None = None,
                  start: dict | None = None, on_stop: Callable[[dict], None] | None = None,
                  on_state: Callable[[Callable[[], dict]], None] | None = None) -> list[dict]:
    """Initialise ``weight`` ~ N(init_mean, init_std) and train it in place (``method``: "sparse",
    "dense", "graph" (CUDA only), "fused" (CPU, numba) or "auto": see :func:`resolve_method`); returns
    per-epoch stats:
    ``norm_dev`` mean |‖W_i‖_p − R| over units, ``never_won`` units that have not won any input yet,
    ``winner_changes`` share of inputs whose winning unit differs from the previous epoch's.
    ``ranking_dtype = "bf16"`` ranks the units on bf16 currents (see the module's docstring).

    Checkpoints: ``stop`` ends the run after that many epochs of the ``epochs``-long schedule (the
    learning rate still decays over ``epochs``). ``on_stop(state)`` receives the run's whole state at
    its end (:data:`STATE_TENSORS` and ``epoch``, ``history``); ``start = state`` continues a run from
    such a state, ending exactly as one uninterrupted run with the same arguments would. ``on_state(get)``
    is called after every epoch but the last with a callable that returns the same state at that epoch
    (nothing is copied unless it is called): periodic snapshots, so a stopped process can continue."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight.copy_(torch.normal(init_mean, init_std, weight.shape, generator=generator).to(weight))
    inputs = inputs.to(weight)
    hidden, n = weight.shape[0], len(inputs)
    stop = epochs if stop is None else stop
    if not 0 <= stop <= epochs:
        raise ValueError(f"stop: expected an epoch between 0 and epochs = {epochs}, got {stop}")
    method = resolve_method(method, weight.device, ranking_dtype)
    if method == "graph" and not weight.is_cuda:
        raise ValueError("method = \"graph\" needs the weights on a CUDA device; use \"sparse\" on the CPU")
    if method == "fused" and weight.is_cuda:
        raise ValueError("method = \"fused\" runs on the CPU; use \"graph\" or \"dense\" on a CUDA device")
    if method == "fused" and ranking_dtype != "fp32":
        raise ValueError("method = \"fused\" ranks in fp32 only; use method = \"sparse\" with ranking_dtype = \"bf16\"")
    won = torch.zeros(hidden, dtype=torch.bool, device=weight.device)
    winner = torch.full((n,), -1, dtype=torch.long, device=weight.device)
    history, first = [], 0
    if start is not None:
        first, history = _restore(start, stop, weight, generator, winner, won)
    weighted = weighting(weight, p, currents)
    step_options = dict(p=p, k=k, delta=delta, precision=precision, R=R, anti_hebbian=anti_hebbian,
                        currents=currents)
    if ranking_dtype == "bf16":
        if not native_bf16(weight.device):
            raise ValueError(f"ranking_dtype = \"bf16\": {weight.device.type} here has no native bf16 "
                             f"arithmetic (AMX, AVX512-BF16 or a CUDA GPU >= sm80); use \"fp32\"")
        step_options["ranking"] = weighted.to(torch.bfloat16)
    elif ranking_dtype != "fp32":
        raise ValueError(f"ranking_dtype: expected one of {', '.join(RANKING_DTYPES)}, got {ranking_dtype!r}")
    run_epoch = None
    if method == "graph":
        run_epoch = _graph_epoch_runner(weight, weighted, inputs, winner, batch_size, step_options)
        if run_epoch is None:
            warnings.warn("hebbian: CUDA graph capture failed; running the dense steps one by one")
    if run_epoch is None:
        if method == "fused":
            from harness_hebbian.fused import FusedStep

            step = FusedStep(hidden, batch_size, weight.dtype)
        else:
            step = STEPS["dense" if method == "graph" else method]
        run_epoch = _epoch_runner(step, weight, weighted, inputs, winner, batch_size, step_options)

    def state(epoch: int) -> dict:
        return {"epoch": epoch, "history": list(history), "weight": weight.detach().cpu().clone(),
                "generator": generator.get_state(), "winner": winner.cpu().clone(), "won": won.cpu().clone()}

    for epoch in range(first, stop):
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
        if on_state is not None and epoch + 1 < stop:
            on_state(lambda done=epoch + 1: state(done))
    if on_stop is not None:
        on_stop(state(stop))
    return history


STATE_TENSORS = ("weight", "generator", "winner", "won")


def _restore(state: dict, stop: int, weight, generator, winner, won) -> tuple[int, list[dict]]:
    """Put a saved run state back (see :func:`train_hebbian`); returns (its epoch, its history)."""
    if not 0 <= state["epoch"] <= stop:
        raise ValueError(f"start: a state saved at epoch {state['epoch']} cannot continue a run that stops at {stop}")
    for name, tensor in (("weight", weight), ("winner", winner), ("won", won)):
        if state[name].shape != tensor.shape:
            raise ValueError(f"start: the saved {name} has shape {list(state[name].shape)}, "
                             f"this run's {list(tensor.shape)}")
        tensor.copy_(state[name])
    generator.set_state(state["generator"])
    return state["epoch"], list(state["history"])


def hebbian_step_seeds(weight: torch.Tensor, weighted: torch.Tensor, x: torch.Tensor, *, p: float, k: int,
                       delta: float, lr: float, precision: float, R: float = 1.0, anti_hebbian: str = "kth",
                       currents: str = "published") -> torch.Tensor:
    """:func:`hebbian_step_dense` for S independent trainings at once: ``weight`` and ``weighted``
    [S, H, D], ``x`` [S, B, D] (each seed its own minibatch); returns the winners [S, B]."""
    current = torch.bmm(x, weighted.transpose(1, 2))                 # [S, B, H]
    ranked = current.topk(k, dim=2).indices
    g = torch.zeros_like(current)
    g.scatter_(2, ranked[..., k - 1:] if anti_hebbian == "kth" else ranked[..., 1:], -delta)
    g.scatter_(2, ranked[..., :1], 1.0)
    update = (R ** p) * torch.bmm(g.transpose(1, 2), x) - (g * current).sum(1)[..., None] * weight
    largest = update.abs().amax(dim=(1, 2), keepdim=True).clamp_min(precision)  # per seed, as one run
    weight.add_(update * (lr / largest))
    weighted.copy_(weighting(weight, p, currents))
    return ranked[..., 0]


def train_hebbian_seeds(weight: torch.Tensor, inputs: torch.Tensor, seeds: list[int], *, p: float, k: int,
                        delta: float, lr: float, epochs: int, batch_size: int, init_mean: float, init_std: float,
                        precision: float, R: float = 1.0, lr_decay: str = "linear", anti_hebbian: str = "kth",
                        currents: str = "published") -> list[list[dict]]:
    """Several seeds of one setting trained in one batched pass: ``weight`` [S, H, D] holds one
    weight matrix per seed; seed ``seeds[s]`` draws its initial weights and minibatch orders exactly
    as :func:`train_hebbian` with that seed does, so ``weight[s]`` ends as that one-seed training
    would (tests/plugins/hebbian/test_hebbian.py). On a GPU S trainings cost about one: each step is one batched
    product instead of S small ones. Returns each seed's per-epoch statistics."""
    if weight.dim() != 3 or weight.shape[0] != len(seeds):
        raise ValueError(f"weight: expected [len(seeds)={len(seeds)}, H, D], got {list(weight.shape)}")
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    for row, generator in zip(weight, generators):
        row.copy_(torch.normal(init_mean, init_std, row.shape, generator=generator).to(row))
    inputs = inputs.to(weight)
    weighted = weighting(weight, p, currents)
    count, hidden, n = weight.shape[0], weight.shape[1], len(inputs)
    won = torch.zeros(count, hidden, dtype=torch.bool, device=weight.device)
    winner = torch.full((count, n), -1, dtype=torch.long, device=weight.device)
    options = dict(p=p, k=k, delta=delta, precision=precision, R=R, anti_hebbian=anti_hebbian, currents=currents)
    histories: list[list[dict]] = [[] for _ in seeds]
    for epoch in range(epochs):
        eps = lr * (1 - epoch / epochs) if lr_decay == "linear" else lr
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(weight.device)  # [S, N]
        previous = winner.clone()
        for start in range(0, n, batch_size):
            batch = orders[:, start:start + batch_size]                                             # [S, B]
            winner.scatter_(1, batch, hebbian_step_seeds(weight, weighted, inputs[batch], lr=eps, **options))
        if not torch.isfinite(weight).all():
            raise FloatingPointError(f"hebbian: NaN or inf in the weights after epoch {epoch + 1}; "
                                     f"lower lr (now {lr}) or check the inputs")
        won.scatter_(1, winner, True)
        norms = weight.abs().pow(p).sum(2).pow(1 / p)
        for s, history in enumerate(histories):
            history.append({"epoch": epoch + 1, "lr": eps, "norm_dev": float((norms[s] - R).abs().mean()),
                            "never_won": int((~won[s]).sum()),
                            "winner_changes": float((winner[s] != previous[s]).float().mean()) if epoch else 1.0})
    return histories
