"""The feedback-alignment learners through BioTorch (plugins/harness_biotorch): they train the repu family
with BioTorch's own layers, agree with BioTorch's own training loop, hand the plain model with the learned
weights to the harness, and the gradient-integrity check flags the converted model differentiated through
its own backward while passing that plain model. Skipped, with the reason, without the biotorch extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.testing import stage_context
from harness_biotorch import INSTALL, MODES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RELU_NET = {"power": 1.0, "beta": 1.0}


def _build(hidden=64, seed=0):
    registry = load_registry()
    spec = registry.models.get("repu")
    dataset = registry.datasets.get("mnist")
    torch.manual_seed(seed)
    return spec.build({**spec.defaults, "hidden": hidden, **RELU_NET}, dataset.info), dataset.info


def _context(mode, model, data, info, params=("fc1.weight", "fc2.weight"), seed=0, **options):
    return stage_context(mode, model, data, params, seed=seed, info=info, **options)


@pytest.fixture(scope="module")
def mnist(mnist_small):
    x, y, x_test, y_test = mnist_small
    return x[:3000], y[:3000], x_test[:500], y_test[:500]


def test_listed_with_or_without_the_extra():
    registry = load_registry()
    assert set(MODES) <= set(registry.learners.names())
    for mode in MODES:
        assert f"BioTorch {mode}" in registry.learners.get(mode).description


def test_without_biotorch_training_fails_with_the_install_command(mnist, monkeypatch):
    """Whatever is installed: with the import blocked, one line naming the extra."""
    monkeypatch.setitem(sys.modules, "biotorch", None)
    monkeypatch.setitem(sys.modules, "biotorch.module.biomodule", None)
    model, info = _build(hidden=8)
    spec, ctx = _context("fa", model, mnist, info, epochs=1)
    with pytest.raises(HarnessError, match=r"learner 'fa' needs BioTorch.*pip install -e '\.\[biotorch\]'") as info_:
        spec.train(ctx)
    assert "\n" not in str(info_.value) and INSTALL in str(info_.value)


@pytest.mark.parametrize("mode,bad", [("fa", {"optimizer": "rmsprop"}), ("dfa", {"lr": 0.0}),
                                      ("usf", {"momentum": 1.0}), ("frsf", {"epochs": 0}),
                                      ("brsf", {"init": "kaiming"}), ("fa", {"init": "normal"})])
def test_check_rejects_bad_options(mode, bad):
    spec = load_registry().learners.get(mode)
    (key, _), = bad.items()
    with pytest.raises(ValueError, match=rf"^{key}: "):
        spec.check({**spec.defaults, **bad})


# -- with BioTorch -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def biotorch():
    return pytest.importorskip("biotorch.module.biomodule", reason=f"BioTorch is not installed: {INSTALL}")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_mode_learns_and_leaves_a_plain_model(biotorch, mnist, mode):
    model, info = _build()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec, ctx = _context(mode, model, mnist, info, epochs=4)
    stats = spec.train(ctx)
    assert type(model).__name__ == "RePUNet" and not any("backward" in n for n, _ in model.named_parameters())
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert stats["converted_layers"] == ["fc1", "fc2"]
    history = stats["history"]
    # Chance is 10 %; measured on these 500 test images after 4 epochs on 3 000 training images: fa 83.2 %,
    # dfa 84.8 %, usf 87.6 %, brsf 87.4 %, frsf 87.4 %.
    assert history[-1]["test_acc"] > 0.7, history
    with torch.no_grad():
        plain = (model(mnist[2]).argmax(1) == mnist[3]).float().mean()
    assert float(plain) == pytest.approx(history[-1]["test_acc"])  # the plain model holds the learned weights


def _biotorch_loop(biotorch, mode, model, data, seed, epochs, batch_size, lr):
    """BioTorch's own training loop (biotorch.training.functions.train) on the same data, minibatch order
    (one CPU generator seeded like the learner's), feedback-weight draws (torch's generator seeded with the
    seed before conversion) and optimiser."""
    from biotorch.training.functions import train as biotorch_train

    from harness_biotorch.train import convert

    x, y, _, _ = data
    generator = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(len(x), generator=generator) for _ in range(epochs)]
    with torch.random.fork_rng(devices=[]):
        bio = convert(model, mode, seed, 10)
        optimizer = torch.optim.Adam([p for n, p in bio.module.named_parameters() if "backward" not in n], lr=lr)
        for epoch, order in enumerate(orders):
            batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[order], y[order]),
                                                  batch_size=batch_size, shuffle=False,
                                                  generator=torch.Generator().manual_seed(0))
            biotorch_train(bio, mode, torch.nn.functional.cross_entropy, optimizer, batches, "cpu", epoch, False,
                           display_iterations=10**9)
    return bio


@pytest.mark.filterwarnings("ignore:Using a non-full backward hook:FutureWarning")  # BioTorch's DFA hook
@pytest.mark.parametrize("mode", ["fa", "dfa", "brsf"])
def test_agrees_with_biotorchs_own_training_loop(biotorch, mnist, mode, capsys):
    reference_start, info = _build(seed=1)
    model, _ = _build(seed=1)
    spec, ctx = _context(mode, model, mnist, info, seed=5, epochs=2, lr=1e-3, batch_size=100)
    ours = spec.train(ctx)["history"][-1]["test_acc"]
    bio = _biotorch_loop(biotorch, mode, reference_start, mnist, seed=5, epochs=2, batch_size=100, lr=1e-3)
    bio.eval()
    x_test, y_test = mnist[2], mnist[3]
    with torch.no_grad():
        theirs = float((bio.module(x_test).argmax(1) == y_test).float().mean())
    # Measured: the same weights to the last bit, and the same accuracy (fa 72.8 %, dfa 70.2 %, brsf 86.0 %).
    for name in ("fc1.weight", "fc2.weight"):
        torch.testing.assert_close(dict(model.named_parameters())[name], dict(bio.module.named_parameters())[name],
                                   rtol=0, atol=1e-6)
    assert abs(ours - theirs) <= 0.002, (ours, theirs)


@pytest.mark.parametrize("mode", ["fa", "usf", "brsf", "frsf"])
def test_gradient_integrity_flags_the_converted_model_and_passes_the_plain_one(biotorch, mnist, mode):
    """DFA is left out: a DFA-converted module in eval mode cannot be differentiated at all (its layers'
    backward hook multiplies the error of the last training batch, None after conversion)."""
    from harness_biotorch.train import convert
    from harness.kit.integrity import gradient_integrity

    model, info = _build()
    spec, ctx = _context(mode, model, mnist, info, epochs=1)
    spec.train(ctx)
    with torch.random.fork_rng(devices=[]):
        converted = convert(model, mode, 0, 10).eval()  # the learned weights, BioTorch's backward
    x, y = mnist[2][:16], mnist[3][:16]
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=1e-5)  # the same forward function
    flagged = gradient_integrity(converted, x, y)
    # Measured median disagreement (fa, usf, brsf, frsf after 2 epochs): 99.9, 73.6, 78.7, 78.8 %.
    assert flagged.flagged and flagged.along_gradient > 0.3, flagged.summary()
    plain = gradient_integrity(model, x, y)
    assert not plain.flagged and plain.median_error < 1e-4, plain.summary()


def test_refuses_a_stage_with_nothing_biotorch_converts(biotorch, mnist):
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.head = torch.nn.Linear(784, 10)

        def forward(self, x):
            return self.head(x.flatten(1)) * self.scale

    model = Scaled()
    spec, ctx = _context("fa", model, mnist, None, params=("scale",), epochs=1)
    with pytest.raises(HarnessError, match=r"none of the stage's parameters \(scale\) is in a layer BioTorch converts"):
        spec.train(ctx)


def test_the_cli_lists_them(biotorch):
    out = subprocess.run([sys.executable, "-m", "harness.cli", "plugins"], capture_output=True, text=True, check=True)
    for mode in MODES:
        assert f"BioTorch {mode}" in out.stdout
