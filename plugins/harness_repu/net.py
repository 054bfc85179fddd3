"""The RePU network itself; imported only when a model is built, so listing plugins stays fast."""

from __future__ import annotations

from torch import nn


class RePUNet(nn.Module):
    """Normalise, fc1, ReLU^power, fc2, times beta. Its tensors are exactly fc1.weight and fc2.weight.

    ``unit = True`` scales each (mean/std-normalised) input vector to unit Euclidean length before fc1,
    as Krotov & Hopfield's classifier needs: with unit-length inputs and weights on the unit sphere the
    currents are similarities of order 1, so RePU^4.5 stays in a range where tanh does not saturate.
    """

    def __init__(self, in_features: int, hidden: int, classes: int, power: float, beta: float,
                 mean: float, std: float, unit: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, classes, bias=False)
        self.power, self.beta, self.mean, self.std = float(power), float(beta), float(mean), float(std)
        self.unit = bool(unit)

    # Where the forward pass can resume (harness/api.py, "resume points"): learners that train only
    # fc2 compute fc2's inputs once instead of every epoch.
    resume_points = ("fc1", "fc2")

    def forward(self, x):
        h = (x.flatten(1) - self.mean) / self.std
        if self.unit:  # an all-zero image stays zero instead of dividing by 0
            h = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.forward_from("fc1", h)

    def forward_from(self, name: str, h):
        """Continue the forward pass from the input of submodule ``name``."""
        if name == "fc1":
            h = self.fc1(h).relu()
            if self.power != 1.0:
                h = h.pow(self.power)
        elif name != "fc2":
            raise ValueError(f"RePUNet cannot resume at {name!r}; resume points: {self.resume_points}")
        return self.beta * self.fc2(h)
