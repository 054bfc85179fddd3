"""The CPU step after the product, compiled into one pass with numba (``method = "fused"``).

:func:`harness_hebbian.rule.hebbian_step` spends about half of each minibatch outside the
[H, D] @ [D, B] product that is the rule's FLOP floor: a strided ``topk`` over the units, ``unique``
(a sort) to find the touched rows, index_add / index_select / index_copy over those rows, the
max-norm of the update and ~20 small kernel launches. None of these is heavy arithmetic; together
they cost as much as the product. Here they are one loop nest in machine code, over the currents
the product left in a reused buffer:

  ranking   one pass over the [H, B] currents row by row (contiguous), keeping each input's k
            largest in a small sorted list: O(H B) with no sort and no transpose
  touched   a unit -> slot table instead of ``unique``: rows touched by several inputs share a slot
  update    R^p sum_b g_ib x_b - (sum_b g_ib I_bi) W_i on the touched rows only, its max |.| found
            on the way, then W_i += eps dW_i / max|dW| and the weighted twin refreshed in the same pass

Written by hand (not torch.compile, which was not measured): the ranking and the touched set have
data-dependent shapes, where torch.compile breaks the graph (``unique``), so the step would stay a
chain of kernels. numba compiles
the loop once per dtype on first use (about a second; cached on disk beside this file where it is
writable) and needs no compiler at run time. Without numba, ``method = "auto"`` falls back to
the eager sparse step; bench/hebbian.py measures both.

Same arithmetic as the sparse step, in the same precision; only the order in which a row's
contributions are summed may differ, so the two agree to float rounding (tests/plugins/hebbian/test_hebbian.py).
Ties between currents rank the lower unit index first.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; a platform without wheels falls back
    numba = None

AVAILABLE = numba is not None

# how the weighted twin is computed from a weight (rule.weighting)
WEIGHTING_COPY, WEIGHTING_SQUARE, WEIGHTING_POW, WEIGHTING_APPENDIX = range(4)


def _weighting_mode(p: float, currents: str) -> int:
    if currents == "thesis-appendix":
        return WEIGHTING_APPENDIX
    return WEIGHTING_COPY if p == 2 else WEIGHTING_SQUARE if p == 3 else WEIGHTING_POW


def _kernel(current, x, weight, weighted, winners, slot_of, k, first, delta, scale_hebb, lr, precision, mode, p):
    """The whole step after the product; ``slot_of`` [H] is all -1 on entry and on return. The
    scalars arrive in the weights' dtype, so every operation runs in that precision."""
    hidden, batch = current.shape
    width = x.shape[1]
    top_value = np.empty((batch, k), current.dtype)
    top_unit = np.empty((batch, k), np.int64)
    # ranking: the first k units sorted, then one pass over the rest, row by row (contiguous reads);
    # a row none of whose currents beats its input's k-th best so far is skipped after one
    # branch-free (vectorised) comparison, which is most rows once the lists fill
    threshold = np.empty(batch, current.dtype)
    for b in range(batch):
        for r in range(k):
            top_value[b, r] = current[r, b]
            top_unit[b, r] = r
            j = r
            while j > 0 and top_value[b, j - 1] < top_value[b, j]:
                top_value[b, j - 1], top_value[b, j] = top_value[b, j], top_value[b, j - 1]
                top_unit[b, j - 1], top_unit[b, j] = top_unit[b, j], top_unit[b, j - 1]
                j -= 1
        threshold[b] = top_value[b, k - 1]
    last = k - 1
    for h in range(k, hidden):
        row = current[h]
        beaten = False
        for b in range(batch):
            beaten |= row[b] > threshold[b]
        if not beaten:
            continue
        for b in range(batch):
            value = row[b]
            if value > threshold[b]:
                j = last
                while j > 0 and top_value[b, j - 1] < value:
                    top_value[b, j] = top_value[b, j - 1]
                    top_unit[b, j] = top_unit[b, j - 1]
                    j -= 1
                top_value[b, j] = value
                top_unit[b, j] = h
                threshold[b] = top_value[b, last]
    # touched rows: each input's winner (g = 1) and its ranks first..k-1 (g = -delta), one slot per unit
    touched = np.empty(batch * (1 + k - first), np.int64)
    count = 0
    for b in range(batch):
        for r in range(k):
            if r == 0 or r >= first:
                unit = top_unit[b, r]
                if slot_of[unit] < 0:
                    slot_of[unit] = count
                    touched[count] = unit
                    count += 1
    hebb = np.zeros((count, width), weight.dtype)
    decay = np.zeros(count, weight.dtype)
    loss = -delta
    for b in range(batch):
        slot = slot_of[top_unit[b, 0]]
        decay[slot] += top_value[b, 0]
        for d in range(width):
            hebb[slot, d] += x[b, d]
        for r in range(first, k):
            slot = slot_of[top_unit[b, r]]
            decay[slot] += loss * top_value[b, r]
            for d in range(width):
                hebb[slot, d] += loss * x[b, d]
    largest = precision  # max(max |dW|, precision), found while dW is formed
    for slot in range(count):
        unit = touched[slot]
        for d in range(width):
            value = scale_hebb * hebb[slot, d] - decay[slot] * weight[unit, d]
            hebb[slot, d] = value
            if abs(value) > largest:
                largest = abs(value)
    step = lr / largest
    for slot in range(count):
        unit = touched[slot]
        slot_of[unit] = -1
        new = weight[unit]
        twin = weighted[unit]
        change = hebb[slot]
        for d in range(width):
            new[d] += step * change[d]
        # one loop per weighting, so that each vectorises
        if mode == WEIGHTING_COPY:
            for d in range(width):
                twin[d] = new[d]
        elif mode == WEIGHTING_SQUARE:
            for d in range(width):
                twin[d] = new[d] * abs(new[d])
        elif mode == WEIGHTING_POW:
            for d in range(width):
                w = new[d]
                twin[d] = (1 if w > 0 else -1 if w < 0 else 0) * abs(w) ** (p - 1)
        else:
            for d in range(width):
                twin[d] = new[d] * abs(new[d]) ** p - 2
    for b in range(batch):
        winners[b] = top_unit[b, 0]


_compiled = numba.njit(cache=True, nogil=True)(_kernel) if AVAILABLE else None


class FusedStep:
    """``hebbian_step``'s signature and effect, with the product into a reused [H, B] buffer and the
    rest in :func:`_kernel`. One instance per training (it owns the buffers)."""

    def __init__(self, hidden: int, batch_size: int, dtype: torch.dtype):
        if not AVAILABLE:
            raise ValueError("method = \"fused\" needs numba (pip install numba); use \"sparse\"")
        self.current = torch.empty(hidden, batch_size, dtype=dtype)
        self.slot_of = np.full(hidden, -1, np.int64)
        self.winners = torch.empty(batch_size, dtype=torch.long)
        self.real = self.current.numpy().dtype.type   # the kernel's scalars, in the weights' precision

    def __call__(self, weight: torch.Tensor, weighted: torch.Tensor, x: torch.Tensor, *, p: float, k: int,
                 delta: float, lr: float, precision: float, R: float = 1.0, anti_hebbian: str = "kth",
                 currents: str = "published") -> torch.Tensor:
        batch = x.shape[0]
        current, winners = self.current, self.winners
        if batch != current.shape[1]:  # the epoch's last, shorter minibatch
            current, winners = torch.empty(weight.shape[0], batch, dtype=weight.dtype), winners[:batch]
        x = x.contiguous()
        torch.mm(weighted, x.T, out=current)        # [H, B]: the FLOP floor, as in the sparse step
        real = self.real
        _compiled(current.numpy(), x.numpy(), weight.numpy(), weighted.numpy(), winners.numpy(),
                  self.slot_of, k, 1 if anti_hebbian == "ranks" else k - 1, real(delta), real(R ** p), real(lr),
                  real(precision), _weighting_mode(p, currents), real(p))
        return winners
