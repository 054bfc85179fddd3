"""The wrapper module; imported only when a defense is applied."""

from __future__ import annotations

from torch import nn


class LogitScale(nn.Module):
    """logits / T. ``temperature`` is recorded as the results column T."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x):
        return self.model(x) / self.temperature
