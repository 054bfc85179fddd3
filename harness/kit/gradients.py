"""Per-image input gradients of the cross-entropy, and the temperature that un-masks them.

A RePU^4.5 net with a 0.01-scaled head has logits so large that the float32 softmax is exactly
one-hot: the cross-entropy's gradient w.r.t. the input is then exactly zero (gradient masking), and
gradient attacks fail for a spurious reason. Dividing the logits by a temperature T brings them back
into softmax's working range; T never changes a prediction (T > 0).

Everything here is batched and runs on the model's device (the device of its first parameter or
buffer, else that of ``x``); results come back as CPU tensors and Python numbers.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from harness.errors import HarnessError

DEFAULT_TEMPERATURES = tuple(10.0 ** k for k in range(13))  # 1, 10, ..., 1e12
AUTO_TARGET = 0.99


def _device(model, x):
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return x.device


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise HarnessError(f"temperature {temperature!r}: expected a positive finite number")
    return temperature


def gradient_stats(model, x, y, temperature: float = 1.0, batch_size: int = 500) -> dict[str, Any]:
    """Per-image input gradients of ``cross_entropy(model(x) / temperature, y)``.

    Returns ``correct``, ``zero`` (every entry of the image's gradient is exactly 0) and
    ``nonfinite`` (a NaN or inf anywhere in it) as CPU bool tensors of length n, their shares
    ``share_correct``, ``share_zero``, ``share_nonfinite``, the shares among correctly classified
    images ``share_zero_correct``, ``share_nonfinite_correct`` (NaN if none is), ``n``,
    ``n_correct`` and ``T``. The loss is summed, so each image's gradient is its own.
    """
    import torch
    import torch.nn.functional as F

    temperature = _check_temperature(temperature)
    if len(x) != len(y):
        raise HarnessError(f"gradient_stats: {len(x)} images but {len(y)} labels")
    if batch_size < 1:
        raise HarnessError(f"gradient_stats: batch_size must be positive, got {batch_size}")
    device = _device(model, x)
    correct, zero, nonfinite = [], [], []
    with torch.enable_grad():
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size].to(device).detach().clone().requires_grad_(True)
            yb = y[start:start + batch_size].to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits / temperature, yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            grad = grad.flatten(1)
            correct.append((logits.detach().argmax(1) == yb).cpu())
            zero.append((grad == 0).all(1).cpu())
            nonfinite.append((~torch.isfinite(grad)).any(1).cpu())
    empty = torch.zeros(0, dtype=torch.bool)
    correct = torch.cat(correct) if correct else empty
    zero = torch.cat(zero) if zero else empty
    nonfinite = torch.cat(nonfinite) if nonfinite else empty
    n, n_correct = len(correct), int(correct.sum())

    def share(mask, among=None) -> float:
        if among is not None:
            mask, count = mask[among], int(among.sum())
        else:
            count = len(mask)
        return float(mask.sum()) / count if count else float("nan")

    return {"T": temperature, "n": n, "n_correct": n_correct, "correct": correct, "zero": zero,
            "nonfinite": nonfinite, "share_correct": share(correct), "share_zero": share(zero),
            "share_nonfinite": share(nonfinite), "share_zero_correct": share(zero, correct),
            "share_nonfinite_correct": share(nonfinite, correct)}


def _only_correct(model, x, y, batch_size: int):
    """The correctly classified images (predictions do not depend on T > 0)."""
    import torch

    device = _device(model, x)
    keep = []
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            keep.append((model(xb).argmax(1) == yb).cpu())
    keep = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.bool)
    index = keep.nonzero().flatten()
    return x[index.to(x.device)], y[index.to(y.device)]


def zero_share_curve(model, x, y, temperatures: Iterable[float], only_correct: bool = False,
                     batch_size: int = 500) -> list[dict[str, Any]]:
    """One dict per temperature, in the given order: ``T``, ``share_zero`` (all images),
    ``share_zero_correct`` (correctly classified ones), ``share_nonfinite``, ``n`` and ``n_correct``.
    With ``only_correct`` the misclassified images are dropped first, so every share is among the
    correctly classified images."""
    if only_correct:
        x, y = _only_correct(model, x, y, batch_size)
    curve = []
    for temperature in temperatures:
        stats = gradient_stats(model, x, y, temperature, batch_size)
        curve.append({key: stats[key] for key in ("T", "share_zero", "share_zero_correct", "share_nonfinite",
                                                  "n", "n_correct")})
    return curve


def usable_share(stats: dict[str, Any]) -> float:
    """Among the correctly classified images: the share with a non-zero, finite input gradient."""
    correct = stats["correct"]
    if not int(correct.sum()):
        return float("nan")
    usable = ~stats["zero"] & ~stats["nonfinite"]
    return float(usable[correct].sum()) / int(correct.sum())


def auto_temperature(model, x, y, target: float = AUTO_TARGET,
                     temperatures: Sequence[float] = DEFAULT_TEMPERATURES, batch_size: int = 500) -> float:
    """The smallest of ``temperatures`` (default 1, 10, ..., 1e12) at which at least ``target`` of
    the correctly classified images have a non-zero, finite input gradient. Raises
    :class:`HarnessError` when none does, or when no image is classified correctly."""
    temperatures = sorted(_check_temperature(t) for t in temperatures)
    if not temperatures:
        raise HarnessError("auto temperature: no candidate temperature given")
    if not 0 < target <= 1:
        raise HarnessError(f"auto temperature: target {target!r} must be in (0, 1]")
    x, y = _only_correct(model, x, y, batch_size)
    if not len(y):
        raise HarnessError("T = auto: the model classifies none of the images correctly; "
                           "there is no gradient to restore, set T by hand")
    best = (-1.0, temperatures[0])
    for temperature in temperatures:
        share = usable_share(gradient_stats(model, x, y, temperature, batch_size))
        if share >= target:
            return temperature
        best = max(best, (share, temperature), key=lambda pair: pair[0])
    raise HarnessError(
        f"T = auto: no T in {temperatures[0]:g}..{temperatures[-1]:g} gives {100 * target:g}% of the "
        f"{len(y)} correctly classified images a non-zero, finite input gradient (best: "
        f"{100 * best[0]:.1f}% at T={best[1]:g}); the masking is not softmax saturation (a hard "
        f"threshold or non-differentiable output?): use gradient-free attacks or set T by hand")
