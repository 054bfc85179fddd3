"""The Krotov-Hopfield learner on real MNIST: the update matches the published rule, weights of
units that win converge to unit norm, and the learned detectors look like digits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness_hebbian import fused
from harness_hebbian.rule import STEPS, native_bf16, resolve_method, train_hebbian, train_hebbian_seeds, weighting


def reference_update(W, X, p, k, delta, eps, prec=1e-30, R=1.0, anti="kth", currents="published"):
    """A plain float64 transcription of the published minibatch update (PNAS 2019, reference code):
    rank units by the l_p-weighted current, +1 for the first, -delta for the k-th (or ranks 2..k),
    then dW = R^p g X - (g * I) W, normalised by its largest entry."""
    if currents == "thesis-appendix":
        weighted = W * np.abs(W) ** p - 2
    else:
        weighted = np.sign(W) * np.abs(W) ** (p - 1)
    tot_input = weighted @ X.T                                       # [H, B]
    order = np.argsort(tot_input, axis=0)
    g = np.zeros_like(tot_input)
    columns = np.arange(X.shape[0])
    g[order[-1], columns] = 1.0
    for rank in ([k] if anti == "kth" else range(2, k + 1)):
        g[order[-rank], columns] = -delta
    xx = np.sum(g * tot_input, axis=1)
    ds = R ** p * (g @ X) - xx[:, None] * W
    nc = max(np.abs(ds).max(), prec)
    return W + eps * ds / nc


def reference_training(X, hidden, *, p, k, delta, lr, epochs, batch_size, seed, R=1.0, anti="kth",
                       currents="published", decay="linear"):
    """The published training loop, replaying the learner's documented random draws."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.normal(0.0, 1.0, (hidden, X.shape[1]), generator=generator).double().numpy()
    for epoch in range(epochs):
        eps = lr * (1 - epoch / epochs) if decay == "linear" else lr
        order = torch.randperm(len(X), generator=generator).numpy()
        for start in range(0, len(X), batch_size):
            W = reference_update(W, X[order[start:start + batch_size]], p, k, delta, eps, R=R, anti=anti,
                                 currents=currents)
    return W


@pytest.fixture(scope="module")
def inputs(mnist_small):
    x, y, _, _ = mnist_small
    return ((x.flatten(1) - 0.1307) / 0.3081), y


CASES = [dict(p=p, k=k) for p in (2.0, 3.0) for k in (2, 7)] + [
    dict(p=3.0, k=4, anti="ranks"),
    dict(p=2.0, k=2, R=2.0, decay="constant"),
    dict(p=2.0, k=2, currents="thesis-appendix"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_training_matches_published_rule(inputs, case):
    """Learner and a plain float64 transcription, from the same initial weights and the same
    minibatch order, agree to 1e-6 after several epochs."""
    x = inputs[0][:600].double()
    settings = dict(delta=0.4, lr=0.05, epochs=4, batch_size=50, seed=3)
    expected = reference_training(x.numpy(), 40, **settings, **case)
    weight = torch.empty(40, 784, dtype=torch.float64)
    train_hebbian(weight, x, init_mean=0.0, init_std=1.0, precision=1e-30,
                  **settings, p=case["p"], k=case["k"], R=case.get("R", 1.0),
                  lr_decay=case.get("decay", "linear"), anti_hebbian=case.get("anti", "kth"),
                  currents=case.get("currents", "published"))
    assert np.abs(expected - weight.numpy()).max() < 1e-6


def trained_by(x, case, methods):
    """{method: 30 units trained on ``x`` (float64) for 3 epochs by that method}, same seed and case."""
    weights = {}
    for method in methods:
        weights[method] = torch.empty(30, 784, dtype=torch.float64)
        train_hebbian(weights[method], x, init_mean=0.0, init_std=1.0, precision=1e-30, delta=0.4, lr=0.05,
                      epochs=3, batch_size=40, seed=5, p=case["p"], k=case["k"], R=case.get("R", 1.0),
                      lr_decay=case.get("decay", "linear"), currents=case.get("currents", "published"),
                      anti_hebbian=case.get("anti", "kth"), method=method)
    return weights


@pytest.mark.parametrize("case", CASES[:1] + CASES[4:], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_dense_path_equals_sparse_path(inputs, case):
    """The GPU path (dense products) and the CPU path (touched rows only) are the same update."""
    weights = trained_by(inputs[0][:400].double(), case, ("sparse", "dense"))
    assert (weights["sparse"] - weights["dense"]).abs().max() < 1e-9


needs_numba = pytest.mark.skipif(not fused.AVAILABLE, reason="numba is not installed: no fused step")


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fused_step_equals_sparse_step(inputs, case, dtype):
    """On a fixed sequence of real minibatches, each from the same state, the fused step picks the
    same winners and makes the same update as the eager sparse step, to float rounding."""
    x = inputs[0][:1000].to(dtype)
    p = case["p"]
    options = dict(p=p, k=case["k"], delta=0.4, lr=0.05, precision=1e-30, R=case.get("R", 1.0),
                   anti_hebbian=case.get("anti", "kth"), currents=case.get("currents", "published"))
    weight = torch.normal(0.0, 1.0, (60, 784), generator=torch.Generator().manual_seed(1)).to(dtype)
    weighted = weighting(weight, p, options["currents"])
    step = fused.FusedStep(60, 100, dtype)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for start in range(0, len(x), 100):
        batch = x[start:start + 100]
        twin, twin_weighted = weight.clone(), weighted.clone()
        expected = STEPS["sparse"](weight, weighted, batch, **options)
        got = step(twin, twin_weighted, batch, **options)
        assert torch.equal(got, expected)
        assert (twin - weight).abs().max() <= tolerance * weight.abs().max()
        assert (twin_weighted - weighted).abs().max() <= tolerance * weighted.abs().max()


@needs_numba
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fused_training_equals_sparse_training(inputs, case):
    """Whole trainings in float64 (a short last minibatch included) end at the same weights."""
    weights = trained_by(inputs[0][:430].double(), case, ("sparse", "fused"))
    assert (weights["sparse"] - weights["fused"]).abs().max() < 1e-9


def test_auto_method_prefers_fused_on_the_cpu_and_falls_back(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_method("auto", cpu) == ("fused" if fused.AVAILABLE else "sparse")
    assert resolve_method("auto", cpu, "bf16") == "sparse"       # the fused step ranks in float32 only
    assert resolve_method("dense", cpu) == "dense"
    monkeypatch.setattr(fused, "AVAILABLE", False)
    assert resolve_method("auto", cpu) == "sparse"
    with pytest.raises(ValueError, match="numba"):
        fused.FusedStep(10, 10, torch.float32)


def test_fused_method_refuses_bf16_ranking(inputs):
    with pytest.raises(ValueError, match="fp32"):
        train_hebbian(torch.empty(10, 784), inputs[0][:100], p=2.0, k=2, delta=0.4, lr=0.04, epochs=1,
                      batch_size=50, init_mean=0.0, init_std=1.0, precision=1e-30, seed=0, method="fused",
                      ranking_dtype="bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES[:1] + CASES[4:], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_cuda_graph_path_equals_dense_path(inputs, case):
    """Replaying the captured epoch runs the dense steps' kernels in the same order: same weights."""
    x = inputs[0][:400].cuda()
    weights = {}
    for method in ("dense", "graph"):
        weights[method] = torch.empty(30, 784, device="cuda")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a failed capture would silently test dense vs dense
            train_hebbian(weights[method], x, init_mean=0.0, init_std=1.0, precision=1e-30, delta=0.4,
                          lr=0.05, epochs=3, batch_size=40, seed=5, p=case["p"], k=case["k"],
                          R=case.get("R", 1.0), lr_decay=case.get("decay", "linear"),
                          currents=case.get("currents", "published"), anti_hebbian=case.get("anti", "kth"),
                          method=method)
    assert (weights["dense"] - weights["graph"]).abs().max() < 1e-5


def test_graph_method_needs_cuda(inputs):
    weight = torch.empty(10, 784)
    with pytest.raises(ValueError, match="CUDA"):
        train_hebbian(weight, inputs[0][:100], p=2.0, k=2, delta=0.4, lr=0.04, epochs=1, batch_size=50,
                      init_mean=0.0, init_std=1.0, precision=1e-30, seed=0, method="graph")


@pytest.fixture(scope="module")
def trained(inputs):
    x, _ = inputs
    torch.manual_seed(0)
    weight = torch.empty(100, 784)
    history = train_hebbian(weight, x, p=2.0, k=2, delta=0.4, lr=0.04, epochs=30, batch_size=100,
                            init_mean=0.0, init_std=1.0, precision=1e-30, seed=0)
    return weight, history


def test_units_that_win_reach_unit_norm(trained, inputs):
    weight, history = trained
    x, _ = inputs
    wins = torch.bincount((x @ weight.T).argmax(1), minlength=len(weight))
    frequent = wins >= 20
    assert frequent.sum() >= 50, "most units should win regularly"
    norms = weight[frequent].norm(dim=1)
    assert torch.all((norms - 1).abs() < 0.05), norms
    # From N(0, 1) initial weights (norm ~28) the norm deviation shrinks over training.
    assert history[-1]["norm_dev"] < 0.1 * history[0]["norm_dev"]
    assert [h["epoch"] for h in history] == list(range(1, 31))
    # winners settle: far fewer inputs change their winning unit at the end than at the start
    assert history[-1]["winner_changes"] < 0.5 * history[1]["winner_changes"]
    assert history[-1]["never_won"] <= history[0]["never_won"]


def test_detectors_resemble_digits(trained, inputs):
    weight, _ = trained
    x, y = inputs
    wins = torch.bincount((x @ weight.T).argmax(1), minlength=len(weight))
    detectors = F.normalize(weight[wins >= 20], dim=1)
    random = F.normalize(torch.randn(100, 784, generator=torch.Generator().manual_seed(1)), dim=1)
    images = F.normalize(x, dim=1)
    class_means = F.normalize(torch.stack([x[y == c].mean(0) for c in range(10)]), dim=1)
    # Each detector is close to some real digit and to some class's mean image; random weights are not.
    assert (detectors @ images.T).max(1).values.median() > 0.7
    assert (random @ images.T).max(1).values.max() < 0.3
    assert (detectors @ class_means.T).max(1).values.median() > 0.5
    assert (random @ class_means.T).max(1).values.max() < 0.2


def test_nan_weights_stop_training(inputs):
    x, _ = inputs
    bad = x[:200].clone()
    bad[5, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        train_hebbian(torch.empty(20, 784), bad, p=2.0, k=2, delta=0.4, lr=0.04, epochs=1, batch_size=100,
                      init_mean=0.0, init_std=1.0, precision=1e-30, seed=0)


NATIVE_BF16 = pytest.mark.skipif(not native_bf16(torch.device("cpu")),
                                 reason="this CPU has no native bf16 arithmetic (AMX or AVX512-BF16)")


def test_bf16_ranking_is_opt_in():
    from harness_hebbian import DEFAULTS, PRESETS

    assert DEFAULTS["ranking_dtype"] == "fp32"
    assert all("ranking_dtype" not in preset for preset in PRESETS.values())


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_bf16_ranking_changes_only_the_ranking(inputs, method):
    """Where bf16 currents rank the units as float32 ones do, one bf16-ranked step is the float32 step:
    the update itself uses float32 currents."""
    x = inputs[0][:2000]
    weight = torch.randn(60, 784, generator=torch.Generator().manual_seed(2))
    weighted = weighting(weight, 2.0)
    exact, rough = (x @ weighted.T).topk(2, dim=1).indices, (x.bfloat16() @ weighted.bfloat16().T).topk(2, dim=1).indices
    agree = (exact == rough).all(1)
    assert 0.5 < agree.float().mean() < 1.0  # near-ties do rank differently: the test sees both kinds
    batch = x[agree][:100]
    step = STEPS[method]
    after = {}
    for name, ranking in (("fp32", None), ("bf16", weighted.bfloat16())):
        w, wd = weight.clone(), weighted.clone()
        winners = step(w, wd, batch, p=2.0, k=2, delta=0.4, lr=0.05, precision=1e-30, ranking=ranking)
        after[name] = (w, winners)
        if ranking is not None:
            assert torch.equal(ranking, wd.bfloat16())  # the bf16 twin follows the weights
    assert torch.equal(after["fp32"][1], after["bf16"][1])
    assert (after["fp32"][0] - after["bf16"][0]).abs().max() < 1e-5


@NATIVE_BF16
def test_bf16_training_tracks_fp32_training(inputs):
    x = inputs[0][:5000]
    weights, histories = {}, {}
    for dtype in ("fp32", "bf16"):
        weights[dtype] = torch.empty(50, 784)
        histories[dtype] = train_hebbian(weights[dtype], x, p=2.0, k=2, delta=0.4, lr=0.04, epochs=5,
                                         batch_size=100, init_mean=0.0, init_std=1.0, precision=1e-30,
                                         seed=0, ranking_dtype=dtype)
    assert not torch.equal(weights["fp32"], weights["bf16"])  # bf16 did rank some inputs differently
    winners = {dtype: (x @ w.T).argmax(1) for dtype, w in weights.items()}
    assert (winners["fp32"] == winners["bf16"]).float().mean() > 0.9
    assert histories["bf16"][-1]["norm_dev"] == pytest.approx(histories["fp32"][-1]["norm_dev"], rel=0.1)


def test_bad_or_unsupported_ranking_dtype_is_one_line(write_suite, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.results.table import read_results
    from harness.testing import assert_one_line_error

    suite = """
    [data]
    dataset = "mnist"
    train_size = 200
    test_size = 50
    [models.bio]
    model = "repu"
    hidden = 8
    [[models.bio.stages]]
    learner = "hebbian"
    params = ["fc1.weight"]
    freeze = true
    epochs = 1
    ranking_dtype = "RANKING"
    [attacks.fgsm]
    attack = "fgsm"
    backend = "torchattacks"
    [grid]
    model = ["bio"]
    attack = ["fgsm"]
    eps = [0.0]
    """
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(write_suite(suite.replace("RANKING", "fp16"))), "--out", str(out)])
    assert_one_line_error(result, "models.bio.stages.0", "ranking_dtype", "expected one of fp32, bf16", "'fp16'")
    assert not out.exists()
    monkeypatch.setattr("harness_hebbian.rule.native_bf16", lambda device: False)
    with pytest.raises(ValueError, match='ranking_dtype = "bf16": cpu here has no native bf16 arithmetic'):
        train_hebbian(torch.empty(8, 784), torch.rand(100, 784), p=2.0, k=2, delta=0.4, lr=0.04, epochs=1,
                      batch_size=50, init_mean=0.0, init_std=1.0, precision=1e-30, seed=0, ranking_dtype="bf16")
    result = CliRunner().invoke(cli, ["run", str(write_suite(suite.replace("RANKING", "bf16"), "b.toml")),
                                      "--out", str(out), "--no-cache"])
    errors = set(read_results(out)["error"])
    assert result.exit_code == 1 and errors == {
        'hebbian: ranking_dtype = "bf16": cpu here has no native bf16 arithmetic (AMX, AVX512-BF16 or a CUDA '
        'GPU >= sm80); use "fp32"'}


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[5]], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_seeds_in_one_batched_pass_equal_one_seed_trainings(inputs, case):
    """The seed axis: three seeds trained together end, seed by seed, where one-seed training ends."""
    x = inputs[0][:400].double()
    seeds = [0, 5, 11]
    options = dict(init_mean=0.0, init_std=1.0, precision=1e-30, delta=0.4, lr=0.05, epochs=3, batch_size=40,
                   p=case["p"], k=case["k"], R=case.get("R", 1.0), lr_decay=case.get("decay", "linear"),
                   anti_hebbian=case.get("anti", "kth"))
    together = torch.empty(len(seeds), 30, 784, dtype=torch.float64)
    histories = train_hebbian_seeds(together, x, seeds, **options)
    for index, seed in enumerate(seeds):
        alone = torch.empty(30, 784, dtype=torch.float64)
        history = train_hebbian(alone, x, seed=seed, **options)
        assert (together[index] - alone).abs().max() < 1e-9
        assert [h["never_won"] for h in histories[index]] == [h["never_won"] for h in history]
        assert [h["winner_changes"] for h in histories[index]] == [h["winner_changes"] for h in history]
    assert not torch.equal(together[0], together[1])
    with pytest.raises(ValueError, match=r"weight: expected \[len\(seeds\)=3, H, D\]"):
        train_hebbian_seeds(torch.empty(2, 30, 784), x, seeds, **options)


def test_progress_line_names_the_step_that_runs(mnist_small):
    from harness.api import TrainContext
    from harness.plugins import load_registry

    registry = load_registry()
    spec = registry.get("models", "repu")
    model = spec.build({**spec.defaults, "hidden": 20}, registry.get("datasets", "mnist").info)
    learner = registry.get("learners", "hebbian")
    x, y, xt, yt = mnist_small
    described = []

    def progress(total, description=None):
        described.append(description)
        return lambda n=1, **stats: None

    ctx = TrainContext(model=model, params={"fc1.weight": model.fc1.weight}, x=x[:200], y=y[:200],
                       options={**learner.defaults, "epochs": 1}, x_test=xt[:10], y_test=yt[:10],
                       device=torch.device("cpu"), seed=0, progress=progress)
    learner.train(ctx)
    assert described == [f"hebbian fc1.weight ({'fused' if fused.AVAILABLE else 'sparse'} step)"]
