"""Imported only when an ART attack runs (it needs torch)."""

from __future__ import annotations

from torch import nn


class CastInput(nn.Module):
    """The model, fed inputs cast to its parameters' dtype. Under numpy 2's promotion rules some ART
    attacks (HopSkipJump's binary search) hand float64 arrays to the estimator, which a float32 model
    rejects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(self, x):
        return self.model(x.to(self.dtype))
