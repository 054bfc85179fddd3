"""Measures plugins share with the core: clean accuracy (learners' per-epoch curves) and the size
of a perturbation under a norm, with the float32 slack the evaluator allows (harness/run/evaluator.py)."""

from __future__ import annotations

TOLERANCE = {"linf": 1e-5, "l2": 1e-4}  # float32 slack when checking a perturbation's size


def accuracy(model, x, y, batch_size: int = 1000) -> float:
    """Clean accuracy in eval mode, without gradients (learners use it for per-epoch curves)."""
    import torch

    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
                      for s in range(0, len(x), batch_size))
    return correct / max(len(x), 1)


def perturbation_norm(delta, norm: str):
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
