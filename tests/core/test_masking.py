"""The masking checks on real runs: they fire on a deliberately masked model and stay quiet on a
plain ReLU net trained by backprop; plus each check on hand-made tables."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from harness import hookimpl
from harness.api import Defense
from harness.plugins import load_registry
from harness.results import diagnostics
from harness.run.runner import Runner
from harness.suite.load import load_suite
from harness.suite.tomlwrite import to_toml
from suite_builder import backprop, repu, suite, torchattacks


pytestmark = pytest.mark.slow  # one real run of 24 cells on a net trained on 10 000 images

class Amplify:
    """A 'defense' that multiplies the logits by 1e4: predictions unchanged, float32 softmax
    saturated, input gradients zero — gradient masking on purpose."""

    @hookimpl
    def harness_register_defenses(self, register):
        def wrap(model, options):
            class Amplified(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.model = model

                def forward(self, x):
                    return self.model(x) * options["factor"]
            return Amplified()
        register(Defense(name="amplify", wrap=wrap, defaults={"factor": 1e4}, rescaler=True,
                         description="multiply logits (masks the gradient on purpose)"))


SUITE = suite(train_size=10000, test_size=300, eval={"convergence_images": 150},
              models={"relu": repu(128, backprop(epochs=3), power=1.0, beta=1.0)},
              defenses={"masked": {"defense": "amplify"}},
              attacks={"fgsm": torchattacks("fgsm"), "pgd": torchattacks("pgd", steps=40, alpha=0.02),
                       "noise": {"attack": "noise", "samples": 5}},
              grid={"model": ["relu"], "defense": ["none", "masked"], "attack": ["fgsm", "pgd", "noise"],
                    "eps": [0.0, 0.1, 0.3, 0.5]})


@pytest.fixture(scope="module")
def masking_run(mnist_root, tmp_path_factory):
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("masking")
    (directory / "suite.toml").write_text(to_toml(SUITE))
    registry = load_registry(extra=[Amplify()])
    suite = load_suite(directory / "suite.toml", registry)
    frame = Runner(suite, registry, directory / "out", mnist_root, torch.device("cpu")).run()
    assert (frame["status"] == "ok").all(), frame["error"].unique()
    return frame


def first(frame, defense):
    return frame[(frame["defense"] == defense) & (frame["attack"] != "worst-case")].iloc[0]


def cell(frame, defense, attack, eps):
    return frame[(frame["defense"] == defense) & (frame["attack"] == attack) & (frame["eps"] == eps)].iloc[0]


def test_checks_stay_quiet_on_a_plain_relu_net(masking_run):
    rows = masking_run[masking_run["defense"] == "none"]
    for _, row in rows.iterrows():
        fired = [c for c in diagnostics.CHECKS if row[f"chk_{c}"]]
        assert fired == [] and not row.unreliable and row.meaningless == row.upper_bound == "", row.reasons
    assert first(masking_run, "none").zero_grad_share < 0.01
    assert set(rows["checks_skipped"]) == {"gradient_free"}  # no Square / HopSkipJump in this grid


def test_checks_fire_on_the_deliberately_masked_model(masking_run):
    row = cell(masking_run, "masked", "pgd", 0.5)
    assert row.unreliable and row.meaningless
    assert row.chk_gradients and row.zero_grad_share > 0.5
    # PGD sees no gradient: at eps 0.5 it cannot reach the near-100 % success the bare model shows,
    # and random noise of the same size does better than it
    assert row.chk_large_eps and row.chk_noise
    assert "exactly zero" in row.meaningless and "random noise" in row.meaningless
    assert "exactly zero" in cell(masking_run, "masked", "fgsm", 0.1).meaningless
    # flags concern attacked rows only: not eps 0, not the noise baseline
    for attack, eps in [("pgd", 0.0), ("noise", 0.5), ("noise", 0.1)]:
        assert not cell(masking_run, "masked", attack, eps).unreliable, (attack, eps)


def test_worst_case_pools_the_masked_and_bare_attacks(masking_run):
    worst = masking_run[masking_run["attack"] == "worst-case"]
    assert sorted(worst["eps"]) == [0.1, 0.3, 0.5]
    bare = masking_run[(masking_run["defense"] == "none") & (masking_run["attack"] == "pgd")]
    for _, row in worst.iterrows():
        assert row.defense == "masked+none"
        assert row.robust_acc <= float(bare[bare["eps"] == row.eps]["robust_acc"].iloc[0])


def table(**columns):
    """A one-group results table; unspecified columns get harmless values."""
    n = len(columns["robust_acc"])
    base = dict(dataset=["d"] * n, model=["m"] * n, seed=[0] * n, defense=["none"] * n, norm=["linf"] * n,
                zero_grad_share=[0.0] * n, nonfinite_grad_share=[0.0] * n, converged_gap=[float("nan")] * n,
                config_hash=[f"cell{i}" for i in range(n)])
    base.update(columns)
    return pd.DataFrame(base)


@pytest.mark.parametrize("check,columns,fires", [
    ("single_step", dict(attack=["fgsm", "pgd"], attack_kind=["single-step", "iterative"], eps=[0.1, 0.1],
                         robust_acc=[0.40, 0.60]), True),
    ("single_step", dict(attack=["fgsm", "pgd"], attack_kind=["single-step", "iterative"], eps=[0.1, 0.1],
                         robust_acc=[0.60, 0.595]), False),
    ("gradient_free", dict(attack=["square", "pgd", "fgsm"], attack_kind=["gradient-free", "iterative", "single-step"],
                           eps=[0.1] * 3, robust_acc=[0.2, 0.5, 0.6]), True),
    ("noise", dict(attack=["noise", "pgd"], attack_kind=["baseline", "iterative"], eps=[0.3, 0.3],
                   robust_acc=[0.3, 0.8]), True),
    ("noise", dict(attack=["noise", "pgd"], attack_kind=["baseline", "iterative"], eps=[0.3, 0.3],
                   robust_acc=[0.8, 0.3]), False),
    ("monotone", dict(attack=["pgd"] * 3, attack_kind=["iterative"] * 3, eps=[0.1, 0.2, 0.3],
                      robust_acc=[0.5, 0.3, 0.45]), True),
    ("monotone", dict(attack=["pgd"] * 3, attack_kind=["iterative"] * 3, eps=[0.1, 0.2, 0.3],
                      robust_acc=[0.5, 0.3, 0.305]), False),
    ("large_eps", dict(attack=["pgd"], attack_kind=["iterative"], eps=[0.5], robust_acc=[0.3]), True),
    ("large_eps", dict(attack=["pgd"], attack_kind=["iterative"], eps=[0.3], robust_acc=[0.3]), None),
    ("converged", dict(attack=["pgd"], attack_kind=["iterative"], eps=[0.1], robust_acc=[0.3],
                       converged_gap=[0.05]), True),
    ("converged", dict(attack=["fgsm"], attack_kind=["single-step"], eps=[0.1], robust_acc=[0.3]), None),
    ("gradients", dict(attack=["pgd"], attack_kind=["iterative"], eps=[0.1], robust_acc=[0.3],
                       zero_grad_share=[0.9]), True),
    ("gradients", dict(attack=["pgd"], attack_kind=["iterative"], eps=[0.1], robust_acc=[0.3],
                       nonfinite_grad_share=[0.2]), True),
])
def test_each_check_on_a_hand_made_table(check, columns, fires):
    findings = diagnostics.evaluate(table(**columns))[check]
    assert (None if findings is None else bool(findings)) is fires, findings
    assert all(f.reason and f.index for f in findings or [])
