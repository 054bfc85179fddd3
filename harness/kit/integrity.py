"""Gradient integrity: does the model's backward pass compute the gradient of its forward function?

Learning rules such as feedback alignment replace the backward pass of a layer (a fixed random matrix
instead of W^T); a model that keeps such a backward hands an attack a direction that is not the
gradient of what it computes, and the attack then overstates robustness. Masking checks that read the
gradient (zero shares, attack comparisons) do not see it, because that gradient is not zero.

The check compares, on a few test images, autograd's directional derivative of the attack loss
(cross-entropy of logits / T, as the attacks see it) along several directions with a central finite
difference of the forward function along the same directions, both in float64 on a double copy of
the model so that float32 saturation (the masking the other checks report) does not enter. The
directions: autograd's own gradient direction (where a wrong backward shows most) and random unit
directions, seeded. A model whose relative disagreement exceeds :data:`TOLERANCE` on the median
(image, direction) pair is flagged.

Where the softmax saturates even in float64 (RePU^4.5 through T = 1: logit gaps beyond ~745), the
cross-entropy is flat and no pair can be compared; the check then uses the logit margin instead, the true
class's logit minus that of the runner-up at the clean image (held fixed, so the function is smooth):
the same question of the same backward, on a function that does not saturate. This is decided per image
(an image whose cross-entropy is flat in every direction is compared on its margin); ``Integrity.loss``
says which function was used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

TOLERANCE = 0.05      # median relative disagreement above which a backward is not the forward's gradient
STEP = 1e-4           # central-difference step along a unit direction, in float64
RANDOM_DIRECTIONS = 3


@dataclass(frozen=True)
class Integrity:
    images: int
    pairs: int                # image x direction pairs compared
    median_error: float       # median |autograd - finite difference| / max(|autograd|, |finite difference|)
    worst_error: float
    along_gradient: float     # median relative error along autograd's own gradient direction
    dtype: str                # the precision the comparison ran in
    flagged: bool
    loss: str = "cross-entropy"  # the function compared; the margin on images whose cross-entropy is flat

    def summary(self) -> str:
        verdict = ("the backward pass does NOT compute the gradient of the forward function"
                   if self.flagged else "autograd agrees with finite differences")
        return (f"gradient integrity: {verdict} (median relative disagreement {100 * self.median_error:.2f} %, "
                f"along autograd's own direction {100 * self.along_gradient:.2f} %, worst "
                f"{100 * self.worst_error:.2f} %; {self.pairs} image x direction pairs, {self.dtype}, {self.loss})")


def _loss(module, x, y, T, other=None):
    """Per image: the cross-entropy of logits / T, or with ``other`` (the runner-up classes) the margin
    between the true class's and the runner-up's logit / T."""
    import torch.nn.functional as F

    logits = module(x) / T
    if other is None:
        return F.cross_entropy(logits, y, reduction="none")
    return (logits.gather(1, y[:, None]) - logits.gather(1, other[:, None])).squeeze(1)


def _runner_up(module, x, y):
    """The highest-scoring class other than the true one, per image."""
    import torch

    with torch.no_grad():
        logits = module(x).clone()
    logits.scatter_(1, y[:, None], float("-inf"))
    return logits.argmax(1)


def gradient_integrity(module, x, y, T: float = 1.0, directions: int = RANDOM_DIRECTIONS, seed: int = 0,
                       step: float = STEP) -> Integrity:
    """Compare autograd with finite differences for ``module`` on images ``x`` (labels ``y``)."""
    import torch

    try:
        twin, dtype = copy.deepcopy(module).double().eval(), torch.float64
        x = x.double()
    except (RuntimeError, TypeError):  # a model that cannot run in float64: compare in float32, larger step
        twin, dtype, step = copy.deepcopy(module).eval(), torch.float32, max(step, 1e-2)
    x = x.to(dtype).detach().requires_grad_(True)
    name = str(dtype).removeprefix("torch.")
    errors = _compare(twin, x, y, T, None, directions, seed, step)          # [direction, image], NaN: flat
    flat = errors.isnan().all(0)
    loss = "cross-entropy"
    if flat.any():  # images whose cross-entropy is flat in every direction: compare the logit margin there
        part = x[flat].detach().requires_grad_(True)
        errors[:, flat] = _compare(twin, part, y[flat], T, _runner_up(twin, part, y[flat]), directions, seed, step)
        loss = "margin" if flat.all() else f"cross-entropy, margin on {int(flat.sum())} of {len(x)} images"
    every, along = errors[~errors.isnan()], errors[0][~errors[0].isnan()]
    if len(every) == 0:
        nan = float("nan")
        return Integrity(len(x), 0, nan, nan, nan, name, False, loss)
    median = float(every.median())
    along_median = float(along.median()) if len(along) else float("nan")
    return Integrity(len(x), len(every), median, float(every.max()), along_median, name, median > TOLERANCE, loss)


def _compare(twin, x, y, T, other, directions: int, seed: int, step: float):
    """Relative disagreement of autograd's directional derivative with a central difference, per
    direction (autograd's own first, then random ones) and image: [direction, image], NaN where both are
    ~0 (a flat direction: nothing to compare)."""
    import torch

    gradient, = torch.autograd.grad(_loss(twin, x, y, T, other).sum(), x)
    flat = gradient.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    candidates = [flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-300)]
    for _ in range(directions):
        random = torch.randn(flat.shape, generator=generator).to(x.dtype)
        candidates.append(random / random.norm(dim=1, keepdim=True))
    errors = []
    with torch.no_grad():
        for direction in candidates:
            v = direction.view_as(x)
            automatic = (flat * direction).sum(1)
            finite = (_loss(twin, x + step * v, y, T, other) - _loss(twin, x - step * v, y, T, other)) / (2 * step)
            scale = torch.maximum(automatic.abs(), finite.abs())
            error = (automatic - finite).abs() / scale.clamp_min(1e-300)
            errors.append(torch.where(scale > 1e-10, error, torch.full_like(error, float("nan"))))
    return torch.stack(errors)
