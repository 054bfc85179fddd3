"""The wrapper module; imported only when a defense is applied."""

from __future__ import annotations

import math

from torch import nn


class LogitScale(nn.Module):
    """logits / T (the defense declares ``temperature_option="T"``, so T is recorded in the results)."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        temperature = float(temperature)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"logit-scale: T must be a positive finite number, got {temperature!r}")
        self.model = model
        self.temperature = temperature

    def forward(self, x):
        return self.model(x) / self.temperature
