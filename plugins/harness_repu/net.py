"""The RePU network itself; imported only when a model is built, so listing plugins stays fast."""

from __future__ import annotations

from torch import nn


class RePUNet(nn.Module):
    """Normalise, fc1, ReLU^power, fc2, times beta. Its tensors are exactly fc1.weight and fc2.weight."""

    def __init__(self, in_features: int, hidden: int, classes: int, power: float, beta: float,
                 mean: float, std: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, classes, bias=False)
        self.power, self.beta, self.mean, self.std = float(power), float(beta), float(mean), float(std)

    def forward(self, x):
        h = self.fc1((x.flatten(1) - self.mean) / self.std).relu()
        if self.power != 1.0:
            h = h.pow(self.power)
        return self.beta * self.fc2(h)
