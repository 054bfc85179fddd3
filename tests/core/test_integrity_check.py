"""Gradient integrity as a masking check of every run (harness/kit/integrity.py, the ``integrity`` check
of harness/results/diagnostics.py): a model whose backward is not the gradient of its forward gets its
gradient attacks' rows graded meaningless, with the disagreement in the row; built-in models pass."""

from __future__ import annotations

import types

import torch
from torch import nn

from harness import hookimpl
from harness.api import Model


class FeedbackAlignment(torch.autograd.Function):
    """y = x W^T whose backward sends the error through a fixed random matrix B instead of W."""

    @staticmethod
    def forward(ctx, x, weight, feedback):
        ctx.save_for_backward(feedback)
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad):
        feedback, = ctx.saved_tensors
        return grad @ feedback, None, None


class FANet(nn.Module):
    """A fixed 784 -> 32 -> 10 ReLU net differentiated through feedback alignment in its first layer."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.w1 = nn.Parameter(torch.randn(32, 784, generator=generator) / 28, requires_grad=False)
        self.w2 = nn.Parameter(torch.randn(10, 32, generator=generator) / 6, requires_grad=False)
        self.register_buffer("b1", torch.randn(32, 784, generator=generator) / 28)

    def forward(self, x):
        return FeedbackAlignment.apply(x.flatten(1), self.w1, self.b1).relu() @ self.w2.T


PLUGIN = types.SimpleNamespace(harness_register_models=hookimpl(lambda register: register(Model(
    name="fa-net", build=lambda options, info: FANet(), pretrained=True,
    description="a fixed net whose first layer's backward is feedback alignment (a test plugin)"))))


def test_a_backward_that_is_not_the_gradient_grades_the_gradient_attacks_meaningless(harness_plugin, run_suite):
    harness_plugin(PLUGIN, "fa-test")
    frame = run_suite({
        "data": {"dataset": "mnist", "train_size": 500, "test_size": 40},
        "models": {"fa": {"model": "fa-net"},
                   "bp": {"model": "repu", "hidden": 16, "stages": [{"learner": "backprop", "epochs": 1}]}},
        "attacks": {"pgd": {"attack": "pgd", "backend": "torchattacks", "steps": 3},
                    "noise": {"attack": "noise", "backend": "torch"}},
        "grid": {"model": ["fa", "bp"], "attack": ["pgd", "noise"], "eps": [0.0, 0.1]},
    })
    rows = frame[frame["status"] == "ok"].set_index(["model", "attack", "eps"])
    assert rows.loc[("fa", "pgd", 0.1), "grad_integrity"] > 0.5       # the row says by how much
    assert rows.loc[("fa", "pgd", 0.1), "chk_integrity"]
    assert "autograd disagrees with finite differences" in rows.loc[("fa", "pgd", 0.1), "meaningless"]
    assert not rows.loc[("fa", "noise", 0.1), "chk_integrity"]       # noise needs no gradient
    assert rows.loc[("fa", "worst-case", 0.1), "chk_integrity"]       # and the worst case over it is graded
    assert rows.loc[("bp", "pgd", 0.1), "grad_integrity"] < 1e-4 and not rows.loc[("bp", "pgd", 0.1), "chk_integrity"]
    assert "integrity" not in rows.loc[("bp", "pgd", 0.1), "checks_skipped"]  # checked, none found


def test_an_older_table_without_the_measure_says_integrity_was_not_checked(tmp_path):
    import pandas as pd

    from harness.results.diagnostics import check_integrity

    rows = pd.DataFrame({"attack_kind": ["iterative"], "eps": [0.1], "attack": ["pgd"],
                         "grad_integrity": [float("nan")]})
    assert check_integrity(rows) is None  # None: not checked (listed in checks_skipped), not "none found"
    assert check_integrity(rows.assign(grad_integrity=[0.001])) == []
