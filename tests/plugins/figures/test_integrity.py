"""Gradient integrity (harness/kit/integrity.py): autograd against finite differences
flags a backward that is not the forward's gradient (feedback alignment's fixed random feedback, a
custom backward) and passes every built-in model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.api import DataInfo
from harness.plugins import load_registry
from harness.kit.integrity import gradient_integrity

INFO = DataInfo((1, 28, 28), 10, 0.1307, 0.3081)


@pytest.fixture(scope="module")
def images(mnist_small):
    x, y, xt, yt = mnist_small
    return xt[:16], yt[:16]


@pytest.mark.parametrize("name", sorted(load_registry().names("models")))
def test_every_built_in_model_passes(images, name):
    registry = load_registry()
    spec = registry.get("models", name)
    if name == "external":
        pytest.skip("'external' wraps a model of the user's (a factory or file); tests/core/test_eval_model.py "
                    "evaluates one through it")
    torch.manual_seed(0)
    module = spec.build(dict(spec.defaults), INFO).eval()
    x, y = images
    result = gradient_integrity(module, x, y, T=1e5)
    assert not result.flagged, result.summary()
    assert result.median_error < 1e-4 and result.pairs > 0


class FeedbackAlignment(torch.autograd.Function):
    """y = x W^T, but the backward sends the error through a fixed random matrix B, not W (Lillicrap et
    al. 2016), as BioTorch's FA layers do."""

    @staticmethod
    def forward(ctx, x, weight, feedback):
        ctx.save_for_backward(x, feedback)
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        return grad @ feedback, grad.T @ x, None


class FANet(nn.Module):
    def __init__(self, plain: bool = False):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.w1 = nn.Parameter(torch.randn(64, 784, generator=generator) / 28)
        self.w2 = nn.Parameter(torch.randn(10, 64, generator=generator) / 8)
        self.register_buffer("b1", torch.randn(64, 784, generator=generator) / 28)
        self.plain = plain

    def forward(self, x):
        x = x.flatten(1)
        h = torch.relu(x @ self.w1.T if self.plain else FeedbackAlignment.apply(x, self.w1, self.b1))
        return h @ self.w2.T


def test_a_feedback_alignment_backward_is_flagged_and_its_plain_conversion_passes(images):
    x, y = images
    fa = gradient_integrity(FANet(), x, y)
    assert fa.flagged and fa.along_gradient > 0.05, fa.summary()
    plain = gradient_integrity(FANet(plain=True), x, y)
    assert not plain.flagged and plain.median_error < 1e-4, plain.summary()


class Straight(torch.autograd.Function):
    """A hard step in the forward, the identity in the backward (a straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0.5).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_a_custom_backward_is_flagged(images):
    x, y = images
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, inputs):
            return self.linear(Straight.apply(inputs.flatten(1)) + 0.1 * inputs.flatten(1))

    result = gradient_integrity(Net(), x, y)
    assert result.flagged, result.summary()


def test_the_command_passes_a_trained_harness_model(small_run, mnist_root):
    from click.testing import CliRunner

    from harness.cli import cli

    bio = next((small_run[2] / "models").glob("bio-seed0-*.safetensors"))
    result = CliRunner().invoke(cli, ["diagnose", "integrity", str(bio), "--T", "1e5", "--n", "8",
                                      "--data-dir", str(mnist_root)])
    assert result.exit_code == 0, result.output
    assert "gradient integrity: autograd agrees with finite differences" in result.output


class Saturating(nn.Module):
    """Logits 1e5 times a linear map's: gaps far beyond ~745, so the softmax saturates even in float64
    and the cross-entropy is flat (as RePU^4.5 through T = 1 is); optionally with a straight-through step."""

    def __init__(self, straight: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(784, 10)
        self.straight = straight

    def forward(self, inputs):
        flat = inputs.flatten(1)
        if self.straight:
            flat = Straight.apply(flat) + 0.1 * flat
        return 1e5 * self.linear(flat)


def test_a_saturated_softmax_is_checked_on_the_logit_margin(images):
    import torch.nn.functional as F

    x, y = images
    twin = Saturating().double()
    probabilities = F.softmax(twin(x.double()), dim=1)
    assert bool(((probabilities == 0) | (probabilities == 1)).all())  # flat cross-entropy: nothing to compare
    right = Saturating()(x).argmax(1) == y
    assert 0 < int(right.sum()) < len(y)  # some images flat (right and saturated), some not (wrong: linear)
    result = gradient_integrity(Saturating(), x, y)
    assert result.loss == f"cross-entropy, margin on {int(right.sum())} of {len(y)} images", result.summary()
    assert result.pairs == 4 * len(y)
    alone = gradient_integrity(Saturating(), x[right], y[right])
    assert alone.loss == "margin" and alone.pairs > 0 and not alone.flagged, alone.summary()
    assert not result.flagged and result.median_error < 1e-4, result.summary()
    wrong = gradient_integrity(Saturating(straight=True), x[right], y[right])
    assert wrong.loss == "margin" and wrong.flagged, wrong.summary()
    assert gradient_integrity(Saturating(), x, y, T=1e5).loss == "cross-entropy"  # unsaturated: as before
