"""A network trained outside the harness, for README.md "Evaluate your own model".

    python examples/own-model/mlp.py    # trains it (about 20 s on 2 CPU cores), writes mlp.safetensors
    harness eval examples/own-model/mlp.py:build --weights mlp.safetensors --eps 0.1,0.15 --n 200 --attacks fast

``build`` is the factory ``harness eval`` calls; it returns the untrained network, and the harness
loads the weights from the safetensors file into it. The model takes [N, 1, 28, 28] images in
[0, 1] and returns [N, 10] logits: any normalisation belongs inside it.
"""

from __future__ import annotations

import torch
from torch import nn


def build(hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train(epochs: int = 2, out: str = "mlp.safetensors") -> None:
    """Plain Adam on MNIST. Any training code will do; this one borrows the harness's copy of MNIST
    (fetched into $HARNESS_DATA or the user cache on first use)."""
    from safetensors.torch import save_file

    from harness.kit.cli_options import data_root
    from harness.plugins import load_registry

    mnist = load_registry().datasets.get("mnist")
    root = data_root(None)
    mnist.fetch(root)
    x, y = mnist.load(root, True)
    x_test, y_test = mnist.load(root, False)
    torch.manual_seed(0)
    model = build()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for batch in torch.randperm(len(x)).split(128):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean()
        print(f"epoch {epoch + 1}: test accuracy {100 * float(accuracy):.2f}%")
    save_file(model.state_dict(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    train()
