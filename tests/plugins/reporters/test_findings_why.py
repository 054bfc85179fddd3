"""The "Why" section of the findings page (plugins/harness_reporters/findings_why.py) on a real,
small mechanism run: checkpoints, a schedule pair, a control, attack families (APGD-CE through two
views, the representation attack, a transfer attack), two seeds, and `harness diagnose geometry`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from suite_builder import run_from_cli, backprop, bio, first_layer, logit_scale, repu, suite, torchattacks

MODELS = ["bio-e1", "bio-s1", "bio", "random", "bp"]
SUITE = suite(
    name="why-small", train_size=2000, test_size=100, eval={"convergence_images": 0},
    models={"bio-e1": bio(16, {"epochs": 3, "stop_after": 1}, {"epochs": 5}, power=1.0, beta=1.0),
            "bio": bio(16, {"epochs": 3}, {"epochs": 5}, power=1.0, beta=1.0),
            "bio-s1": bio(16, {"epochs": 1}, {"epochs": 5}, power=1.0, beta=1.0),
            "random": repu(16, first_layer("random"), backprop("fc2.weight", epochs=5), power=1.0, beta=1.0),
            "bp": repu(16, backprop(epochs=5), power=1.0, beta=1.0)},
    defenses={"T1": logit_scale(1.0), "T1e3": logit_scale(1e3)},
    attacks={"apgd-ce": torchattacks("apgd-ce", steps=5),
             "representation": {"attack": "representation", "backend": "torch", "steps": 5},
             "from-bp": {"attack": "transfer", "backend": "torch", "source": "bp", "via": "apgd-ce"}},
    grid={})
SUITE["grid"] = [
    {"model": MODELS, "defense": ["T1", "T1e3"], "attack": ["apgd-ce"], "eps": [0.0, 0.1, 0.2], "seed": [0, 1]},
    {"model": MODELS, "defense": ["T1"], "attack": ["representation"], "eps": [0.1, 0.2], "seed": [0, 1]},
    {"model": MODELS[:-1], "defense": ["T1"], "attack": ["from-bp"], "eps": [0.1, 0.2], "seed": [0, 1]},
]

SPEC = """
[findings]
out = "page/findings.md"
images = "page/img"
a = "bio"
b = "bp"
eps = [0.1, 0.2]
[headline]
run = "{run}"
suite = "suites/why-small.toml"
attack = "apgd-ce"
[why]
run = "{run}"
suite = "suites/why-small.toml"
seeds = 2
reference = "bp"
schedule = ["bio-s1", "bio-e1"]
[[why.factors]]
name = "Hebbian epochs"
points = [["1 of 3", "bio-e1"], ["3", "bio"]]
[[why.factors]]
name = "schedule"
points = [["first 1 of 3", "bio-e1"], ["1 of 1", "bio-s1"]]
[[why.factors]]
name = "controls"
control = true
points = [["Hebbian", "bio"], ["frozen random", "random"]]
"""


@pytest.fixture(scope="module")
def why_run(tmp_path_factory):
    return run_from_cli(tmp_path_factory.mktemp("why"), SUITE, "why")


def test_the_why_section_relates_the_run_to_its_geometry(why_run, tmp_path):
    from harness.results.diagnostics import WORST
    from harness.results.table import read_results
    from harness_reporters.findings_spec import read_spec
    from harness_reporters.findings_why import why_data

    spec_path = tmp_path / "findings.toml"
    spec_path.write_text(SPEC.format(run=why_run))
    spec = read_spec(spec_path)
    before = why_data(spec.why, spec.eps, "bio", 200, spec_path)
    assert before.missing_geometry and not before.relations  # the page says how to make it
    geometry = CliRunner().invoke(cli, ["diagnose", "geometry", str(why_run), "--T", "1", "--T", "1000"])
    assert geometry.exit_code == 0, geometry.output
    data = why_data(spec.why, spec.eps, "bio", 200, spec_path)
    assert len(data.points) == 10 and data.view == 1000.0  # five models x two seeds, the largest view
    assert {r.statistic for r in data.relations} == {"boundary", "margin", "logit_scale", "active", "zero_grad",
                                                     "grad_l1"}
    families = data.families.set_index(["eps", "family"])
    assert set(families.index.get_level_values("family")) == {"apgd-ce", "representation", "transfer"}
    rows = read_results(why_run)
    worst = rows[(rows["model"] == "bio") & (rows["attack"] == WORST)].groupby("eps")["robust_acc"].mean()
    for eps in (0.1, 0.2):  # pooled here from the per-image files, there by the run's end-of-run checks
        assert families.loc[(eps, "apgd-ce"), "all"] == pytest.approx(worst[eps], abs=1e-9)
        assert (families.xs(eps, level="eps")["lowers"] >= 0).all()
    line = data.schedule  # bio-s1 against bio-e1, both seeds, on the same images
    assert line["seeds"] == 2 and line["test"] == "two-level bootstrap" and line["eps"] == 0.1
    s1 = rows[(rows["model"] == "bio-s1") & (rows["attack"] == WORST) & (rows["eps"] == 0.1)]["robust_acc"].mean()
    assert line["acc_a"] == pytest.approx(s1, abs=1e-9) and line["low"] <= line["diff"] <= line["high"]

    result = CliRunner().invoke(cli, ["findings", str(spec_path), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    assert "Why: what the robustness of `bio` follows" in page and "Spearman ρ" in page
    assert "The schedule question, `bio-s1` − `bio-e1`" in page
    assert (tmp_path / "page" / "img" / "findings-why-geometry.png").is_file()


def test_the_rank_correlation_interval_finds_a_monotone_relation_and_not_noise():
    from harness_reporters.findings_why import spearman_interval

    x = np.arange(20, dtype=float)
    rho, low, high = spearman_interval(x, x ** 3, 500)
    assert rho == pytest.approx(1.0) and low == pytest.approx(1.0)
    rng = np.random.default_rng(4)
    rho, low, high = spearman_interval(rng.normal(size=40), rng.normal(size=40), 500)
    assert low < 0 < high
    assert np.isnan(spearman_interval(x[:3], x[:3], 10)[0])  # too few points: no claim


def test_one_outlier_among_ties_is_no_evidence_of_a_relation():
    """Nine models at 0 % and one above: a third of the resamples miss the outlier and show no relation.
    They count as rho = 0, so the interval holds 0 and its own point estimate (dropping them gave
    [-0.83, -0.53] around rho = -0.52 on a smoke run of suites/thesis-why.toml)."""
    from harness_reporters.findings_why import spearman_interval

    x = np.array([5.0, 3.0, 8.0, 1.0, 9.0, 2.0, 7.0, 4.0, 6.0, 10.0])
    y = np.array([0.0] * 9 + [5.0])
    rho, low, high = spearman_interval(x, y, 2000)
    assert rho == pytest.approx(0.522, abs=1e-3)
    assert low <= 0 <= high and low <= rho <= high


def test_a_why_table_with_a_bad_schedule_is_one_line(tmp_path, why_run):
    from harness.testing import assert_one_line_error

    spec_path = tmp_path / "findings.toml"
    spec_path.write_text(SPEC.format(run=why_run).replace('schedule = ["bio-s1", "bio-e1"]', 'schedule = ["bio-s1"]'))
    assert_one_line_error(CliRunner().invoke(cli, ["findings", str(spec_path)]), "why.schedule",
                          "expected [model, the model it is paired with]")


def test_before_its_run_exists_the_why_section_says_what_it_will_show(tmp_path, why_run):
    """The mechanism run grows across sessions: before its first row the page names its points and the
    command, and a point the suite does not declare is still a one-line error."""
    from harness.testing import assert_one_line_error

    suite_file = tmp_path / "why-small.toml"
    suite_file.write_text("".join(f'[models.{name}]\nmodel = "repu"\n' for name in MODELS))
    head, why = SPEC.format(run=why_run).split("[why]")
    why = why.replace(f'run = "{why_run}"', 'run = "not-yet"').replace('suite = "suites/why-small.toml"',
                                                                     f'suite = "{suite_file}"')
    spec_path = tmp_path / "findings.toml"
    spec_path.write_text(head + "[why]" + why)
    result = CliRunner().invoke(cli, ["findings", str(spec_path), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    section = page.split('<a id="why">')[1].split("<a id=")[0]
    assert "run `not-yet` (not started yet: no row is committed)" in section
    assert "Hebbian epochs: 1 of 3, 3; schedule: first 1 of 3, 1 of 1; controls: Hebbian, frozen random" in section
    assert "the schedule pair `bio-s1` − `bio-e1`" in section and "Spearman" not in section
    spec_path.write_text(head + "[why]" + why.replace('["3", "bio"]', '["3", "bio-typo"]'))
    assert_one_line_error(CliRunner().invoke(cli, ["findings", str(spec_path)]), "why: model 'bio-typo' is not in "
                          "the run's suite")
