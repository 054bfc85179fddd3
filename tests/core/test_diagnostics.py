"""Gradient-masking diagnostics: zero-gradient shares vs the logit temperature, ``T = "auto"``, and the
``harness diagnose gradients`` / ``harness show perturbations`` figures, on the shared small run's
real Bio (Hebbian + RePU^4.5, masked at T = 1) and BP nets and on tiny synthetic models."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError, SuiteError
from harness.kit.gradients import auto_temperature, gradient_stats, zero_share_curve
from harness.testing import assert_one_line_error
from suite_builder import backprop, fgsm_on, logit_scale, repu

TEMPERATURES = [10.0 ** k for k in range(6)]  # 1 ... 1e5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nets(small_run, mnist_root):
    """(bio module, bp module, bio path, bp path, x_test, y_test): the small run's 500 test images."""
    import torch

    from harness.run.modelstore import load_model
    from harness.plugins import load_registry

    torch.set_num_threads(1)
    registry = load_registry()
    directory = small_run[2] / "models"
    bio_path = next(directory.glob("bio-seed0-*.safetensors"))
    bp_path = next(directory.glob("bp-seed0-*.safetensors"))
    bio, _ = load_model(bio_path, registry)
    bp, _ = load_model(bp_path, registry)
    x, y = registry.datasets.get("mnist").load(mnist_root, False)
    return bio, bp, bio_path, bp_path, x[:500], y[:500]


@pytest.fixture(scope="module")
def auto_T(nets):
    bio, bp, *_, x, y = nets
    return auto_temperature(bio, x, y), auto_temperature(bp, x, y)


def relu_net(seed: int = 0, hidden: int = 32):
    """A random plain ReLU net of the repu plugin (power 1, beta 1) on MNIST-shaped inputs."""
    import torch

    from harness.api import DataInfo
    from harness.plugins import load_registry

    torch.manual_seed(seed)
    spec = load_registry().models.get("repu")
    options = {**spec.defaults, "hidden": hidden, "power": 1.0, "beta": 1.0}
    return spec.build(options, DataInfo((1, 28, 28), 10, 0.13, 0.31)).eval()


class Times:
    """``model(x) * factor``: a deliberately saturated (masked) toy model."""

    def __new__(cls, model, factor: float):
        from torch import nn

        class Scaled(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model(x) * factor

        return Scaled().eval()


def toy_data(model, n: int = 200, seed: int = 1):
    """Random [0, 1] images labelled with the model's own predictions (all classified correctly)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


# -- the real nets ----------------------------------------------------------------------------------
def test_bio_net_is_masked_at_T1_and_unmasked_by_T1e5(nets):
    bio, _, _, _, x, y = nets
    curve = zero_share_curve(bio, x, y, TEMPERATURES)
    shares = [row["share_zero"] for row in curve]
    assert [row["T"] for row in curve] == TEMPERATURES
    assert shares[0] > 0.5, curve
    assert shares[-1] < 0.01, curve
    assert all(later <= earlier for earlier, later in zip(shares, shares[1:])), shares
    assert all(row["share_nonfinite"] == 0 for row in curve)
    assert curve[0]["share_zero_correct"] >= curve[0]["share_zero"]  # saturation hits the confident ones
    stats = gradient_stats(bio, x, y, 1.0, batch_size=128)  # batching does not change the answer
    assert stats["n"] == 500 and stats["share_zero"] == shares[0]
    assert stats["zero"].dtype.is_floating_point is False and len(stats["correct"]) == 500


def test_only_correct_restricts_every_share_to_correctly_classified_images(nets):
    bio, _, _, _, x, y = nets
    (full,) = zero_share_curve(bio, x, y, [1.0])
    (only,) = zero_share_curve(bio, x, y, [1.0], only_correct=True)
    assert only["n"] == only["n_correct"] == full["n_correct"]
    assert only["share_zero"] == pytest.approx(full["share_zero_correct"])


def test_auto_temperature_of_the_bio_and_bp_nets(auto_T):
    bio_T, bp_T = auto_T
    assert 1e2 <= bio_T <= 1e7
    assert bio_T in [10.0 ** k for k in range(13)]
    assert bp_T == 1.0  # backprop's logits are not saturated: nothing to rescale


def test_logit_scale_fit_resolves_auto(nets, auto_T, registry):
    bio, bp, *_, x, y = nets
    defense = registry.defenses.get("logit-scale")
    assert defense.rescaler and defense.keywords == {"T": ("auto",)}
    assert defense.fit(bio, {"T": "auto"}, x, y) == {"T": auto_T[0]}
    assert defense.fit(bp, {"T": "auto"}, x, y) == {"T": 1.0}
    assert defense.fit(bio, {"T": 3.0}, x, y) == {"T": 3.0}  # a number is left alone
    with pytest.raises(ValueError, match="fit"):
        defense.wrap(bio, {"T": "auto"})
    import torch

    wrapped = defense.wrap(bio, defense.fit(bio, {"T": "auto"}, x, y))
    assert wrapped.temperature == auto_T[0]
    with torch.no_grad():  # a rescaler never changes a prediction
        assert torch.equal(wrapped(x[:50]).argmax(1), bio(x[:50]).argmax(1))


def rescaled_suite(T):
    """A backprop net under the rescaler at ``T``."""
    return fgsm_on("net", repu(None, backprop()), defenses={"rescaled": logit_scale(T)})


def test_suite_accepts_auto_and_rejects_other_strings(write_suite, registry):
    from harness.suite.load import load_suite

    suite = load_suite(write_suite(rescaled_suite("auto")), registry)
    assert suite.defenses["rescaled"].options == {"T": "auto"}
    assert load_suite(write_suite(rescaled_suite(1e5)), registry).defenses["rescaled"].options == {"T": 1e5}
    for bad in ("big", -1.0, 0):
        with pytest.raises(SuiteError, match=r"defenses\.rescaled\.T"):
            load_suite(write_suite(rescaled_suite(bad)), registry)


# -- synthetic models -----------------------------------------------------------------------------------
def test_a_plain_relu_net_has_no_zero_gradients():
    net = relu_net()
    x, y = toy_data(net)
    stats = gradient_stats(net, x, y)
    assert stats["share_zero"] == 0 and stats["share_nonfinite"] == 0
    assert auto_temperature(net, x, y) == 1.0


def test_a_saturated_toy_model_is_detected_and_auto_T_undoes_it():
    net = relu_net()
    masked = Times(net, 1e6)
    x, y = toy_data(net)
    assert gradient_stats(masked, x, y)["share_zero"] > 0.95
    T = auto_temperature(masked, x, y)
    assert 1e4 <= T <= 1e8
    assert gradient_stats(masked, x, y, temperature=T)["share_zero"] < 0.01


def test_a_hard_threshold_model_is_masked_at_every_T():
    import torch
    from torch import nn

    class Threshold(nn.Module):  # sign() has a zero derivative everywhere: no T helps
        def __init__(self):
            super().__init__()
            self.net = relu_net()

        def forward(self, x):
            h = torch.sign(self.net.fc1((x.flatten(1) - 0.13) / 0.31))
            return self.net.fc2(h)

    model = Threshold().eval()
    x, y = toy_data(model, n=100)
    curve = zero_share_curve(model, x, y, [1.0, 1e6])
    assert [row["share_zero"] for row in curve] == [1.0, 1.0]
    with pytest.raises(HarnessError, match="not softmax saturation"):
        auto_temperature(model, x, y, temperatures=[1.0, 1e3, 1e6])


def test_overflowing_logits_count_as_nonfinite():
    net = relu_net()
    x, y = toy_data(net, n=50)
    stats = gradient_stats(Times(net, 1e39), x, y)  # float32 logits overflow to inf: NaN gradients
    assert stats["share_nonfinite"] > 0.95 and stats["share_zero"] < 0.05
    with pytest.raises(HarnessError, match="T = auto"):
        auto_temperature(Times(net, 1e39), x, y, temperatures=[1.0, 1e6])


# -- the commands -----------------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def assert_png(path, min_width=600):
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.shape[1] >= min_width, pixels.shape
    assert pixels[..., :3].var() > 0.005  # lines and images, not a blank canvas
    return pixels


def test_diagnose_gradients_writes_table_png_and_csv(nets, auto_T, mnist_root, tmp_path):
    bio_path = nets[2]
    out, table = tmp_path / "fig" / "bio.png", tmp_path / "bio.csv"
    result = invoke("diagnose", "gradients", bio_path, "--t-max", "1e5", "--n", "500", "--data-dir", mnist_root,
                    "--out", out, "--csv", table)
    assert result.exit_code == 0, result.output
    assert "<- auto" in result.output and str(out) in result.output
    assert_png(out)
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["T"]) for r in rows] == TEMPERATURES
    assert float(rows[0]["share_zero"]) > 0.5 and float(rows[-1]["share_zero"]) < 0.01
    assert int(rows[0]["n"]) == 500
    auto_line = next(line for line in result.output.splitlines() if "<- auto" in line)
    assert float(auto_line.split()[0]) == auto_T[0]


def test_diagnose_gradients_default_output_next_to_the_model(nets, mnist_root):
    bp_path = nets[3]
    result = invoke("diagnose", "gradients", bp_path, "--t-max", "100", "--n", "100", "--data-dir", mnist_root)
    assert result.exit_code == 0, result.output
    out = bp_path.with_name(f"{bp_path.stem}-gradients.png")
    assert result.output.strip().splitlines()[-1] == str(out)
    assert_png(out)


def test_show_perturbations_draws_successful_examples(nets, mnist_root, tmp_path):
    bio_path = nets[2]
    out = tmp_path / "gallery.png"
    result = invoke("show", "perturbations", bio_path, "--attack", "fgsm", "--backend", "torchattacks",
                    "--eps", "0.2", "--T", "auto", "--n", "4", "--data-dir", mnist_root,
                    "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "fooled" in result.output and "drew 4" in result.output and "(auto)" in result.output
    pixels = assert_png(out)
    assert pixels.shape[1] > pixels.shape[0]  # 4 columns of original / perturbation / adversarial


def test_show_perturbations_without_success_still_writes_a_figure(nets, mnist_root, tmp_path):
    bp_path = nets[3]
    out = tmp_path / "none.png"
    result = invoke("show", "perturbations", bp_path, "--attack", "pgd", "--backend", "torchattacks",
                    "--eps", "1e-7", "--option", "steps=1", "--n", "2", "--data-dir", mnist_root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "no successful adversarial examples" in result.output
    assert_png(out, min_width=500)


@pytest.mark.parametrize("args, fragments", [
    (["diagnose", "gradients", "nowhere/model.safetensors"], ["no such model file"]),
    (["diagnose", "gradients", "{bio}", "--t-min", "1e5", "--t-max", "10"], ["--t-min", "swap"]),
    (["diagnose", "gradients", "{bio}", "--t-min", "2", "--t-max", "5"], ["no power of ten"]),
    (["show", "perturbations", "{bio}", "--attack", "pgdd", "--eps", "0.1"], ["unknown attack 'pgdd'",
                                                                             "did you mean 'pgd'?"]),
    (["show", "perturbations", "{bio}", "--attack", "pgd", "--eps", "0.1"], ["--backend"]),
    (["show", "perturbations", "{bio}", "--attack", "fgsm", "--eps", "0.1", "--T", "big"], ["--T big", "auto"]),
    (["show", "perturbations", "{bio}", "--attack", "pgd", "--backend", "torchattacks", "--eps", "0.1",
      "--option", "stpes=3"], ["stpes", "did you mean 'steps'?"]),
    (["show", "perturbations", "{bio}", "--attack", "pgd", "--backend", "torchattacks", "--eps", "0.1",
      "--option", "steps=many"], ["steps=many", "an integer"]),
    (["show", "perturbations", "{bio}", "--attack", "pgd", "--backend", "torchattacks", "--eps", "0.1",
      "--option", "steps=0"], ["steps"]),
    (["show", "perturbations", "nowhere/model", "--attack", "fgsm", "--backend", "art", "--eps", "0.1"],
     ["no such model file"]),
])
def test_bad_input_is_one_line_and_exit_2(nets, mnist_root, args, fragments):
    args = [str(nets[2]) if a == "{bio}" else a for a in args]
    assert_one_line_error(invoke(*args, "--data-dir", mnist_root), *fragments)


def test_pooled_worst_case_is_blind_only_if_every_view_is():
    """Masked gradients at T = 1 do not flag a worst case that T = 1e5 also attacked unmasked; an
    unconverged attack in any one view makes it an upper bound; a single step beating PGD does not
    (the single step is pooled into the worst case too)."""
    from harness.results.diagnostics import pooled_checks

    masked = {"gradients": ["97.3% of input gradients are exactly zero or not finite"]}
    unconverged = {"converged": ["pgd at linf eps=0.3: ≥ 5.0 points lower with 2× steps"]}
    stepped = {"single_step": ["pgd at linf eps=0.3: ≥ 3.0 points lower, a single-step attack left 10.0%"]}
    assert not any(pooled_checks([masked, {}]).values())
    assert pooled_checks([masked, masked])["gradients"] == masked["gradients"]
    flagged = pooled_checks([masked, unconverged])
    assert flagged["converged"] == unconverged["converged"] and not flagged["gradients"]
    assert not any(pooled_checks([stepped, {}]).values())
    assert not any(pooled_checks([]).values())
