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

    def summary(self) -> str:
        verdict = ("the backward pass does NOT compute the gradient of the forward function"
                   if self.flagged else "autograd agrees with finite differences")
        return (f"gradient integrity: {verdict} (median relative disagreement {100 * self.median_error:.2f} %, "
                f"along autograd's own direction {100 * self.along_gradient:.2f} %, worst "
                f"{100 * self.worst_error:.2f} %; {self.pairs} image x direction pairs, {self.dtype})")


def _loss(module, x, y, T):
    import torch.nn.functional as F

    return F.cross_entropy(module(x) / T, y, reduction="none")


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
    gradient, = torch.autograd.grad(_loss(twin, x, y, T).sum(), x)
    flat = gradient.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    candidates = [flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-300)]
    for _ in range(directions):
        random = torch.randn(flat.shape, generator=generator).to(dtype)
        candidates.append(random / random.norm(dim=1, keepdim=True))
    errors, along = [], None
    with torch.no_grad():
        for index, direction in enumerate(candidates):
            v = direction.view_as(x)
            automatic = (flat * direction).sum(1)
            finite = (_loss(twin, x + step * v, y, T) - _loss(twin, x - step * v, y, T)) / (2 * step)
            scale = torch.maximum(automatic.abs(), finite.abs())
            meaningful = scale > 1e-10                      # both ~0: nothing to compare (a flat direction)
            error = ((automatic - finite).abs() / scale.clamp_min(1e-300))[meaningful]
            errors.append(error)
            if index == 0:
                along = error
    every = torch.cat(errors)
    if len(every) == 0:
        nan = float("nan")
        return Integrity(len(x), 0, nan, nan, nan, str(dtype).removeprefix("torch."), False)
    median = float(every.median())
    along_median = float(along.median()) if along is not None and len(along) else float("nan")
    return Integrity(len(x), len(every), median, float(every.max()), along_median,
                     str(dtype).removeprefix("torch."), median > TOLERANCE)
