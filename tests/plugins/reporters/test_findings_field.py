"""The findings page's "What the field claims" section (plugins/harness_reporters/findings_field.py) on a real,
small field run: PGD adversarial training, PEPITA and backprop on MNIST, two seeds, APGD-CE; a fourth net of the
suite (BCM) is left off the grid, as an interrupted run leaves nets."""

from __future__ import annotations

import math
import re

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError
from harness.suite.tomlwrite import to_toml
from suite_builder import run_from_cli, backprop, first_layer, repu, suite, torchattacks

RELU = {"power": 1.0, "beta": 1.0, "mean": 0.0, "std": 1.0}
SUITE = suite(
    name="field-small", train_size=2000, test_size=100, eval={"convergence_images": 0},
    models={"bp": repu(32, backprop(epochs=3), **RELU),
            "adv": repu(32, {"learner": "adversarial", "epochs": 3, "eps": 0.2, "steps": 5, "alpha": 0.05}, **RELU),
            "pepita": repu(32, {"learner": "pepita", "params": ["*"], "epochs": 2}, **RELU),
            "bcm": repu(32, first_layer("bcm", epochs=1), backprop("fc2.weight", epochs=1), **RELU)},
    attacks={"apgd-ce": torchattacks("apgd-ce", steps=5)},
    grid={"model": ["bp", "adv", "pepita"], "attack": ["apgd-ce"], "eps": [0.0, 0.1, 0.2], "seed": [0, 1]})

SPEC = """
[findings]
out = "page/findings.md"
images = "page/img"
a = "adv"
b = "bp"
eps = [0.1, 0.2]
[headline]
run = "{run}"
suite = "suites/field-small.toml"
attack = "apgd-ce"
[field]
run = "{run}"
suite = "suites/field-small.toml"
seeds = 3
why_missing = "The small run has two."
[[field.claims]]
source = "Madry et al. (2018)"
rule = "PGD adversarial training"
claim = "MNIST: robust where backprop is not"
pairs = [["adv", "bp"]]
datasets = ["mnist"]
eps = [0.1, 0.2]
[[field.claims]]
source = "Tristany Farinha et al. (2023)"
rule = "PEPITA"
claim = "higher intrinsic robustness than BP"
setting = "theirs is adversarially trained"
pairs = [["pepita", "bp"], ["bcm", "bp"]]
datasets = ["mnist"]
eps = [0.1]
"""


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    return run_from_cli(tmp_path_factory.mktemp("field"), SUITE, "field")


def _spec(tmp_path, run, text=SPEC):
    path = tmp_path / "findings.toml"
    path.write_text(text.format(run=run))
    return path


@pytest.mark.parametrize("low,high,flags,expected", [
    (0.02, 0.10, "", "agrees"), (0.02, 0.10, "upper bound", "agrees only through a flagged number"),
    (0.02, 0.10, "meaningless, upper bound", "agrees only through a flagged number"),
    (-0.10, -0.01, "", "reversed"), (-0.05, 0.05, "", "not supported"), (-0.05, 0.05, "upper bound", "not supported"),
    (math.nan, math.nan, "", "not measured yet"),
])
def test_verdict(low, high, flags, expected):
    from harness_reporters.findings_field import verdict

    assert verdict(low, high, flags) == expected


@pytest.mark.slow
def test_each_claim_line_is_harness_compares_worst_case_line(field_run, tmp_path):
    from harness.results.diagnostics import WORST
    from harness_reporters.findings_field import MISSING, field_data, verdict
    from harness_reporters.findings_spec import read_spec
    from harness_reporters.paired import compare

    spec = read_spec(_spec(tmp_path, field_run))
    data = field_data(spec.field, 200, spec.path)
    assert [(r.model, r.eps) for r in data.rows] == [("adv", 0.1), ("adv", 0.2), ("pepita", 0.1), ("bcm", 0.1)]
    assert data.seeds == {"bp": 2, "adv": 2, "pepita": 2}
    for row in data.rows[:3]:
        lines = compare(field_run, row.model, row.reference, resamples=200)
        line = lines[(lines["attack"] == WORST) & ((lines["eps"] - row.eps).abs() < 1e-9)].iloc[0]
        assert row.line["acc_a"] == line["acc_a"] and row.line["acc_b"] == line["acc_b"]
        assert (row.line["low"], row.line["high"]) == (line["low"], line["high"])
        assert row.line["seeds"] == 2 and row.line["test"] == "two-level bootstrap"
        assert row.verdict == verdict(line["low"], line["high"], line["flag_a"])
    assert data.rows[3].line is None and data.rows[3].verdict == MISSING   # bcm: in the suite, not run
    pepita = spec.field.claims[1]
    assert data.claim_verdict(pepita) == data.rows[2].verdict                # the bcm line does not count


@pytest.mark.slow
def test_the_page_has_the_claims_table(field_run, tmp_path):
    path = _spec(tmp_path, field_run)
    result = CliRunner().invoke(cli, ["findings", str(path), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    section = page[page.index("What the field claims"):]
    assert "The suite asks for 3 seeds per net; the run has 2 per net so far. The small run has two." in section
    assert "| Madry et al. (2018) | PGD adversarial training | MNIST: robust where backprop is not | – |" in section
    assert "`bcm` vs `bp` | mnist | 0.1 | – |" in section and "not measured yet" in section
    assert re.search(r"; t over seeds \[[+-]\d+\.\d, [+-]\d+\.\d\] \|", section)  # two seeds: the paired t beside
    assert "suites/field-small.toml" in page[page.index("Reproduce"):]


@pytest.mark.slow
def test_a_net_outside_the_suite_is_one_line(field_run, tmp_path):
    from harness_reporters.findings_field import field_data
    from harness_reporters.findings_spec import read_spec

    spec = read_spec(_spec(tmp_path, field_run, SPEC.replace('[["adv", "bp"]]', '[["adv", "backprop"]]')))
    with pytest.raises(HarnessError, match=r"findings.toml: field.claims\[0\].pairs\[0\]: model 'backprop' is not "
                                           r"in the run's suite"):
        field_data(spec.field, 200, spec.path)


@pytest.mark.parametrize("change,key", [
    (('datasets = ["mnist"]\neps = [0.1]\n', 'datasets = ["mnist"]\neps = [1.5]\n'), r"field.claims\[1\].eps"),
    (('pairs = [["adv", "bp"]]', 'pairs = ["adv"]'), r"field.claims\[0\].pairs"),
    (("seeds = 3", "seeds = 0"), "field.seeds"),
    (('rule = "PEPITA"', 'rules = "PEPITA"'), r"field.claims\[1\].rules: unknown key"),
    (('datasets = ["mnist"]\neps = [0.1]\n', 'eps = [0.1]\n'), r"field.claims\[1\].datasets"),
])
def test_bad_field_keys_are_one_line(tmp_path, change, key):
    from harness_reporters.findings_spec import read_spec

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("")
    assert change[0] in SPEC
    with pytest.raises(HarnessError, match=key):
        read_spec(_spec(tmp_path, run, SPEC.replace(*change)))


def test_before_the_run_the_claims_are_listed_unmeasured(tmp_path):
    """The field run grows across sessions: with no row yet the page lists every claim as not measured, and
    the nets are still checked against the suite file."""
    from harness_reporters.findings_field import MISSING, field_data, field_section
    from harness_reporters.findings_spec import read_spec

    suite_file = tmp_path / "field-small.toml"
    suite_file.write_text(to_toml(SUITE))
    text = SPEC.replace('suite = "suites/field-small.toml"\nseeds', f'suite = "{suite_file}"\nseeds')
    run = tmp_path / "headline"
    run.mkdir()
    (run / "results.csv").write_text("")
    text = text.replace('[headline]\nrun = "{run}"', '[headline]\nrun = "headline"')
    spec = read_spec(_spec(tmp_path, tmp_path / "not-yet", text))
    data = field_data(spec.field, 200, spec.path)
    assert data.run is None and len(data.rows) == 4 and {r.verdict for r in data.rows} == {MISSING}
    section = field_section(data, "harness run field-small.toml --out not-yet")
    assert "(not started yet: no row is committed); run it with" in section.blocks[0].text
    assert "3 seeds per net; no net has run yet. The small run has two." in section.blocks[0].text
    bad = read_spec(_spec(tmp_path, tmp_path / "not-yet", text.replace('[["adv", "bp"]]', '[["adv", "bpp"]]')))
    with pytest.raises(HarnessError, match=r"pairs\[0\]: model 'bpp' is not in the run's suite"):
        field_data(bad.field, 200, bad.path)
