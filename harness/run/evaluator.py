"""Evaluation of one trained model on the test split: clean predictions, input gradients, and each
attack's per-image outcome under its threat model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.api import Attack
from harness.errors import HarnessError
from harness.kit.measures import TOLERANCE, accuracy, perturbation_norm


@dataclass
class CleanStats:
    correct: Any            # bool tensor [n]: clean prediction right
    zero_share: float       # share of images whose loss gradient w.r.t. the input is exactly zero
    nonfinite_share: float  # share of images with a NaN or inf anywhere in that gradient
    integrity: float = float("nan")  # median |autograd - finite difference| / scale (harness.kit.integrity)


INTEGRITY_IMAGES = 16  # images the gradient-integrity check compares autograd with finite differences on


class Evaluator:
    """Batched evaluation of one model. ``x``/``y`` are the test images and labels on the device."""

    def __init__(self, x, y, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.n = len(y)

    def batches(self, limit: int | None = None):
        n = self.n if limit is None else min(limit, self.n)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            yield self.x[start:stop], self.y[start:stop]

    def clean_accuracy(self, model) -> float:
        return accuracy(model, self.x, self.y, self.batch_size)

    def clean(self, model) -> CleanStats:
        """Clean predictions and the input gradient of the cross-entropy, per image, in float32:
        an exactly zero or non-finite gradient is the signature of gradient masking."""
        from harness.kit.gradients import gradient_stats

        stats = gradient_stats(model, self.x, self.y, batch_size=self.batch_size)
        return CleanStats(stats["correct"].to(self.y.device), stats["share_zero"], stats["share_nonfinite"],
                          self.integrity(model))

    def integrity(self, model) -> float:
        """Whether the view's backward computes the gradient of its forward function: the median relative
        disagreement of autograd with finite differences on the first images (harness.kit.integrity);
        NaN when it cannot be measured (no direction with a non-zero derivative, a model that cannot be
        copied)."""
        from harness.kit.integrity import gradient_integrity

        try:
            return gradient_integrity(model, self.x[:INTEGRITY_IMAGES], self.y[:INTEGRITY_IMAGES]).median_error
        except Exception:  # noqa: BLE001 - a model the check cannot copy or run in float64: not measured
            return float("nan")

    def robust(self, model, attack_fn, spec: Attack, eps: float, seed: int, correct,
               limit: int | None = None):
        """Per image: still classified correctly after the attack (and correctly before it).

        An eps-bounded attack that leaves its ball or [0, 1] is refused: it would report a fake
        success. A minimum-norm attack's result counts only where its perturbation fits in eps.
        """
        import torch

        torch.manual_seed(seed)  # attacks with random starts draw from torch's global generator
        robust = []
        for x, y in self.batches(limit):
            adv = attack_fn(x, y).detach()
            size = perturbation_norm(adv - x, spec.norm)
            if float(adv.min()) < -1e-6 or float(adv.max()) > 1 + 1e-6:
                raise HarnessError(f"attack {spec.name}@{spec.backend} returned pixels outside [0, 1]")
            inside = size <= eps + TOLERANCE[spec.norm]
            if not spec.minimal and not bool(inside.all()):
                raise HarnessError(f"attack {spec.name}@{spec.backend} left the {spec.norm} ball of eps={eps:g} "
                                   f"(largest perturbation {float(size.max()):.4g})")
            with torch.no_grad():
                fooled = (model(adv).argmax(1) != y) & inside
            robust.append(~fooled)
        return torch.cat(robust) & correct[: self.n if limit is None else min(limit, self.n)]
