"""``harness findings``: the findings page from committed runs. Hand-made runs whose per-image outcomes
are known fix every number the answer quotes; a real run checks the page against the leaderboard; bad
findings files get one-line errors."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from test_compare import CELLS, write_run

from harness.cli import cli
from harness.results.stats import mcnemar_exact, p_clause
from harness.testing import assert_one_line_error


def invoke(*args):
    return CliRunner().invoke(cli, ["findings", *map(str, args)])


def spec_text(headline, sweep=None, attack="pgd", eps="[0.1]", extra=""):
    text = f"""
[findings]
out = "page/findings.md"
images = "page/img"
a = "bio"
b = "bp"
eps = {eps}
{extra}
[headline]
run = "{headline}"
suite = "suites/hand.toml"
attack = "{attack}"
"""
    if sweep is not None:
        text += f"""
[sweep]
run = "{sweep}"
suite = "suites/hand-sweep.toml"
seeds = 3
reference = "bp"
why_missing = "the session ended first."
[[sweep.factors]]
name = "width"
points = [["base", "bio"], ["wide", "bio-wide"], ["huge", "bio-huge"]]
[[sweep.factors]]
name = "controls"
control = true
points = [["base", "bio"], ["end to end", "bp"]]
"""
    return text


def write_spec(tmp_path, text):
    path = tmp_path / "findings.toml"
    path.write_text(text)
    return path


# sweep: three seeds of bio (robust on 20, 22, 24 of 40 images) and bp (robust on 5); bio-wide only two
# seeds (30 and 32 images); bio-huge never ran. Worst cases are the single attack's rows.
SWEEP = ([("bp", "T1e5", "pgd", 0.0, s, ()) for s in range(3)]
         + [("bp", "T1e5", "pgd", 0.1, s, range(5)) for s in range(3)]
         + [("bio", "T1e5", "pgd", 0.0, s, ()) for s in range(3)]
         + [("bio", "T1e5", "pgd", 0.1, s, range(20 + 2 * s)) for s in range(3)]
         + [("bio-wide", "T1e5", "pgd", 0.0, s, ()) for s in range(2)]
         + [("bio-wide", "T1e5", "pgd", 0.1, s, range(30 + 2 * s)) for s in range(2)])


def test_the_answer_quotes_the_paired_worst_case_of_the_headline_run(tmp_path):
    run = write_run(tmp_path / "run", CELLS)
    spec = write_spec(tmp_path, spec_text(run))
    result = invoke(spec, "--resamples", "1000")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    answer = page.split('<a id="answer">')[1].split('<a id="headline">')[0]
    # worst case over T1 and T1e5 per image: bio 20 / 40, bp 5 / 40, bio alone right on 15 images
    assert re.search(r"leaves bio at 50\.0 \[\d+\.\d, \d+\.\d\] % and bp at 12\.5 \[", answer), answer
    assert "bio − bp = +37.5 [+" in answer and p_clause(mcnemar_exact(15, 0)) in answer
    assert "so bio is more robust than bp at this budget" in answer
    assert "pgd alone (its strongest logit view) leaves bio at 50.0 % and bp at 22.5 %" in answer
    assert "(img/findings-robust-vs-eps.png)" in page and (tmp_path / "page/img/findings-robust-vs-eps.png").is_file()
    assert "`harness run suites/hand.toml --out " in page
    assert "no rows at ε = 0.15 for bio and bp" in page  # this run has no thesis budget: said, not hidden


def test_only_rows_whose_checks_found_something_are_highlighted(tmp_path):
    """Every grade now says what it found ("none found" included): the ⚠ marks a finding, not a grade."""
    import pandas as pd

    run = write_run(tmp_path / "run", CELLS)
    table = pd.read_csv(run / "results.csv", keep_default_na=False)
    hit = (table["model"] == "bp") & (table["defense"] == "T1") & (table["eps"] == 0.1)
    assert hit.sum() == 1
    table.loc[hit, "meaningless"] = "gradients: 98 % of input gradients are exactly zero"
    table.to_csv(run / "results.csv", index=False)
    assert invoke(write_spec(tmp_path, spec_text(run)), "--resamples", "200").exit_code == 0
    page = (tmp_path / "page" / "findings.md").read_text()
    detail = page.split("<summary>every attack and logit view")[1].split("</details>")[0]
    assert "| ⚠ 0.1 | pgd | T1 | " in detail and "B: meaningless" in detail
    assert "| 0.1 | pgd | T1e5 | " in detail and "⚠ 0.1 | pgd | T1e5" not in detail
    assert "with several seeds" not in detail  # one seed: the Wilson interval is the whole story


def test_a_difference_whose_interval_holds_zero_is_not_called_more_robust(tmp_path):
    same = [("bio", "T1", "pgd", 0.0, 0, ()), ("bio", "T1", "pgd", 0.1, 0, range(20)),
            ("bp", "T1", "pgd", 0.0, 0, ()), ("bp", "T1", "pgd", 0.1, 0, range(1, 21))]
    spec = write_spec(tmp_path, spec_text(write_run(tmp_path / "run", same)))
    assert invoke(spec, "--resamples", "500").exit_code == 0
    page = (tmp_path / "page" / "findings.md").read_text()
    assert "bio − bp = +0.0 [" in page
    assert "the difference between bio and bp is not distinguishable from zero" in page
    answer = page.split('<a id="answer">')[1].split('<a id="headline">')[0]
    assert "more robust than" not in answer and "less robust than" not in answer


def test_the_sweep_table_pairs_each_point_and_lists_what_is_missing(tmp_path):
    run = write_run(tmp_path / "run", CELLS)
    sweep = write_run(tmp_path / "sweep", SWEEP)
    result = invoke(write_spec(tmp_path, spec_text(run, sweep)), "--resamples", "500")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    section = page.split('<a id="sweep">')[1]
    base = next(line for line in section.splitlines() if line.startswith("| width | base |"))
    wide = next(line for line in section.splitlines() if line.startswith("| width | wide |"))
    assert "| bio | 3 |" in base and "| 55.0 [" in base and "+42.5 [" in base   # mean of 20, 22, 24 of 40; bp 5
    assert "each against `bp` (its own worst case, mean over its seeds: 12.5 % at ε = 0.1)" in section
    assert "| bio-wide | 2 |" in wide and "| 77.5 [" in wide and "+65.0 [" in wide   # mean of 30, 32
    assert "two-level bootstrap over seeds and images" in section and "p ε=0.1" in section
    assert ("points or seeds this run lacks: width = wide (`bio-wide`): 2 of 3 seeds (seeds 0, 1); "
            "width = huge (`bio-huge`): no rows. the session ended first.") in page
    # which factor moves it most: width, from 55.0 (base) to 77.5 (wide); the controls (a spread of
    # 42.5 points, base vs bp) are shown but not ranked
    assert "at ε = 0.1, width moves bio's worst-case robust accuracy most, from 55.0 % (base) to 77.5 % (wide)" in page
    # the per-ε spreads table, with the extremes' intervals (seeds, widened to Wilson over the images)
    spreads = next(line for line in section.splitlines() if line.startswith("| 0.1 | width | 22.5 |"))
    assert "| base: 55.0 [" in spreads and "| wide: 77.5 [" in spreads
    assert "| controls | end to end | bp | 3 |" in section and "controls" not in page.split("What moves it")[1].split("\n")[0]
    assert (tmp_path / "page/img/findings-sweep.png").is_file()


@pytest.mark.slow
def test_the_same_tables_give_the_same_bytes(tmp_path):
    run, sweep = write_run(tmp_path / "run", CELLS), write_run(tmp_path / "sweep", SWEEP)
    spec = write_spec(tmp_path, spec_text(run, sweep))
    pages = []
    for _ in range(2):
        assert invoke(spec, "--resamples", "300").exit_code == 0
        pages.append([(tmp_path / "page" / name).read_bytes() for name in
                      ("findings.md", "img/findings-robust-vs-eps.png", "img/findings-sweep.png")])
    assert pages[0] == pages[1]


def test_on_a_real_run_the_page_quotes_the_leaderboard_worst_case(small_run, tmp_path):
    from harness_reporters.leaderboard import leaderboard

    _, _, out = small_run
    spec = write_spec(tmp_path, spec_text(out, attack="pgd-art", eps="[0.1, 0.2]"))
    result = invoke(spec, "--resamples", "500")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    board = leaderboard([out])
    for eps in (0.1, 0.2):
        for model in ("bio", "bp"):
            line = board[(board["model"] == model) & (board["eps"] == eps)].iloc[0]
            quoted = (f"{100 * line.robust_acc:.1f} [{100 * line.robust_low:.1f}, {100 * line.robust_high:.1f}] %")
            assert f"leaves {model} at {quoted}" in page or f"and {model} at {quoted}" in page, (model, eps)
    assert "| T1e5 | 1e5 |" in page  # the logit views table


@pytest.mark.parametrize("change, fragments", [
    (lambda t: t.replace('a = "bio"\n', ""), ["findings.a: missing"]),
    (lambda t: t.replace("eps = [0.1]", "eps = [1.5]"), ["findings.eps: expected a non-empty list"]),
    (lambda t: t.replace('attack = "pgd"', 'attack = "pgdd"'), ["headline.attack: 'pgdd' is not an attack"]),
    (lambda t: t.replace('b = "bp"', 'b = "bpp"'),
     ["findings.b: no successful rows of model 'bpp'", "did you mean 'bp'?"]),
    (lambda t: t + "\n[extra]\n", ["extra: unknown key; expected one of"]),
    (lambda t: t.replace('run = "', 'run = "nowhere/'), ["headline.run:", "has no results.csv"]),
    (lambda t: t + "\n[thesis]\nrun = 3\n", ["thesis.run: expected a non-empty string"]),
    (lambda t: t.replace("[headline]", "[headline"), ["not valid TOML"]),
    (lambda t: t + '\n[sweep]\nrun = "x"\n', ["sweep.factors: expected [[sweep.factors]] tables"]),
])
def test_bad_findings_files_are_one_line_errors(tmp_path, change, fragments):
    spec = write_spec(tmp_path, change(spec_text(write_run(tmp_path / "run", CELLS))))
    line = assert_one_line_error(invoke(spec), *fragments)
    assert str(spec) in line
    assert not (tmp_path / "page").exists()  # nothing written


def test_a_missing_findings_file_is_a_one_line_error(tmp_path, monkeypatch):
    assert_one_line_error(invoke(tmp_path / "none.toml"), "findings file not found")
    monkeypatch.chdir(tmp_path)  # outside the project: the default file is not there
    assert_one_line_error(invoke(), "results/findings.toml: findings file not found", "pass FINDINGS_FILE",
                          "project's root")


def test_out_puts_the_page_elsewhere_with_its_figures_next_to_it(tmp_path):
    run, sweep = write_run(tmp_path / "run", CELLS), write_run(tmp_path / "sweep", SWEEP)
    spec = write_spec(tmp_path, spec_text(run, sweep))
    result = invoke(spec, "--resamples", "300", "--out", tmp_path / "elsewhere" / "page.md")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "elsewhere" / "page.md").read_text()
    assert "](img/findings-sweep.png)" in page and (tmp_path / "elsewhere" / "img" / "findings-sweep.png").is_file()
    assert not (tmp_path / "page").exists()  # not where the findings file says


def test_findings_help_says_where_the_page_goes():
    text = " ".join(CliRunner().invoke(cli, ["findings", "--help"]).output.split())
    assert "--out" in text and "docs/findings.md" in text and "project's root" in text


def test_the_thesis_figure_table_names_each_models_own_strongest_view(tmp_path):
    from harness.results.table import read_results, write_csv

    # eps 0.15, FGSM: bio is weakest through T1e5 (10 of 40 robust), bp through T1 (4 of 40); the first 36
    # images are clean-correct, so among them: bio 10 / 36, bp 4 / 36
    cells = CELLS + [("bio", "T1", "fgsm", 0.15, 0, range(30)), ("bio", "T1e5", "fgsm", 0.15, 0, range(10)),
                     ("bp", "T1", "fgsm", 0.15, 0, range(4)), ("bp", "T1e5", "fgsm", 0.15, 0, range(20))]
    run = write_run(tmp_path / "run", cells)
    frame = read_results(run)  # the hand-made rows leave the clean-correct column to the evaluation: fill it
    frame["robust_acc_cc"] = frame["robust_acc"] * 40 / 36
    write_csv(frame, run / "results.csv")
    spec = write_spec(tmp_path, spec_text(run))
    assert invoke(spec, "--resamples", "300").exit_code == 0
    section = (tmp_path / "page" / "findings.md").read_text().split('<a id="survival">')[1].split("<a id=")[0]
    line = next(row for row in section.splitlines() if "| fgsm (" in row)
    assert "| fgsm (bio T1e5, bp T1) | 27.8 [" in line and "| 11.1 [" in line, line
    assert "| thesis text | PGD-40 | 57.8 | 24.2 |" in section


def test_the_factor_ranking_leaves_out_low_accuracy_points_and_one_seed_extremes():
    from harness_reporters.findings_spec import Factor, Sweep
    from harness_reporters.findings_sweep import Point, SweepData, _ranking

    def point(factor, label, model, seeds, clean, worst):
        return Point(factor, label, model, list(range(seeds)), (clean, clean - 0.02, clean + 0.02),
                     {0.1: (worst, worst - 0.05, worst + 0.05, "")}, {})

    factors = [Factor("inputs", [("base", "bio"), ("unit", "bio-unit")], False),
               Factor("epochs", [("base", "bio"), ("1000", "bio-e1000")], False),
               Factor("p", [("base", "bio"), ("3", "bio-p3")], False)]
    sweep = Sweep(run=None, seeds=3, reference="bp", why_missing="", factors=factors)
    data = SweepData(sweep, None, [0.1], points=[
        point("inputs", "base", "bio", 3, 0.95, 0.15), point("inputs", "unit", "bio-unit", 3, 0.60, 0.32),
        point("epochs", "base", "bio", 3, 0.95, 0.15), point("epochs", "1000", "bio-e1000", 1, 0.96, 0.57),
        point("p", "base", "bio", 3, 0.95, 0.15), point("p", "3", "bio-p3", 3, 0.94, 0.47)])
    effects, unranked = _ranking(data, 0.1)
    assert [e.factor for e in effects] == ["p"]          # inputs: one point left; epochs: one-seed extreme
    assert effects[0].spread == pytest.approx(0.32) and effects[0].high_interval == pytest.approx((0.42, 0.52))
    assert unranked == ["epochs: its extreme point 1000 has one seed"]


def test_the_thesis_claims_are_judged_under_its_attacks_and_the_strongest():
    """On the committed thesis-scale runs: Bio under PGD above BP under FGSM holds nearly everywhere with
    the thesis's attacks, and its opposite holds at every eps once Bio faces its worst case."""
    from pathlib import Path

    from harness_reporters.findings_claims import REVERSED, claims_rows, strong_frames
    from harness_reporters.report_run import load_run

    results = Path(__file__).resolve().parents[3] / "results"
    weak, strong = load_run(results / "thesis-cpu"), load_run(results / "thesis-strong")
    rows = {row[0]: row for row in claims_rows(weak.attacks, strong_frames(strong))}
    pgd_over_fgsm = rows["Bio under PGD stays more accurate than BP under (the weaker) FGSM, T = 1e5"]
    assert pgd_over_fgsm[-1] == REVERSED and pgd_over_fgsm[3].startswith("**disagree**")
    assert rows["FGSM at T = 1e5: Bio's accuracy falls more slowly with ε than BP's"][-1] == "holds"
    clean = rows["Clean test accuracies are comparable (~98 %), BP ahead by about 0.5 points"]
    assert clean[3] == "**—**: not about attack strength"


def test_headline_also_compares_more_models_with_a_seed_inclusive_interval(tmp_path):
    """[headline] also = ["bp-one-adam"]: a second reference, two seeds each: its own sentence with the
    two-level interval, the number of seeds said; a model the run lacks is a one-line error."""
    cells = []
    for seed in (0, 1):
        cells += [("bio", "T1", "pgd", 0.0, seed, ()), ("bio", "T1", "pgd", 0.1, seed, range(30 - 2 * seed)),
                  ("bp", "T1", "pgd", 0.0, seed, ()), ("bp", "T1", "pgd", 0.1, seed, range(10 + seed)),
                  ("bp-one-adam", "T1", "pgd", 0.0, seed, ()), ("bp-one-adam", "T1", "pgd", 0.1, seed, range(4))]
    run = write_run(tmp_path / "run", cells)
    text = spec_text(run).replace('attack = "pgd"', 'attack = "pgd"\nalso = ["bp-one-adam"]')
    result = invoke(write_spec(tmp_path, text), "--resamples", "500")
    assert result.exit_code == 0, result.output
    answer = (tmp_path / "page" / "findings.md").read_text().split('<a id="answer">')[1].split('<a id="headline">')[0]
    assert "2 seeds (0, 1)" in answer
    sentence = answer[answer.index("Against bp-one-adam at ε = 0.1"):]
    assert "bio − bp-one-adam = +" in sentence and "two-level bootstrap" in sentence
    assert "2 seeds: the interval covers training and image sampling" in sentence
    assert "a bootstrap over 2 seeds understates their spread: a paired t over the seeds" in sentence
    bad = invoke(write_spec(tmp_path, spec_text(run).replace('attack = "pgd"', 'attack = "pgd"\nalso = ["bp-two"]')))
    assert bad.exit_code == 2 and "headline.also" in bad.output and "bp-two" in bad.output


def test_with_several_seeds_the_attack_table_gives_each_net_a_seed_level_interval(tmp_path):
    """Two seeds of each net on 40 images: bp keeps 10 and 16 images (25 % and 40 %). Its line in the attack
    table is their mean with the t interval over the two seeds (wider than the images' Wilson interval of
    the mean), as the headline's worst case and [clean] give it; a one-seed run keeps Wilson's."""
    from harness.results.stats import accuracy_interval, seed_summary
    from harness_reporters.report_format import with_interval

    cells = []
    for seed, kept in ((0, 10), (1, 16)):
        cells += [("bio", "T1", "pgd", 0.0, seed, ()), ("bio", "T1", "pgd", 0.1, seed, range(20)),
                  ("bp", "T1", "pgd", 0.0, seed, ()), ("bp", "T1", "pgd", 0.1, seed, range(kept))]
    run = write_run(tmp_path / "run", cells)
    assert invoke(write_spec(tmp_path, spec_text(run)), "--resamples", "200").exit_code == 0
    detail = (tmp_path / "page" / "findings.md").read_text().split("<summary>every attack and logit view")[1]
    assert "with several seeds: each net's mean over the seeds both nets have" in detail
    summary = seed_summary([10 / 40, 16 / 40], n=40)
    expected = with_interval(summary.mean, summary.low, summary.high)
    assert "| 0.1 | pgd | T1 | 50.0 [" in detail and f" | {expected} | " in detail
    assert with_interval(summary.mean, *accuracy_interval(summary.mean, 40)) != expected  # not the images' Wilson


def test_clean_gives_each_nets_accuracy_on_the_whole_split_over_its_seeds(tmp_path):
    """[clean]: a run of the headline's nets on every test image; per net the mean over its seeds with the
    seed-level interval and each seed's value. Seeds are counted per net while one net has more than
    another, and the one-trained-pair caveat follows the seeds the pair shares."""
    import dataclasses

    from test_compare import row

    from harness.results.stats import seed_summary
    from harness.results.table import to_frame, write_csv
    from harness_reporters.report_format import with_interval

    cells = [("bio", "T1", "pgd", 0.0, 0, ()), ("bio", "T1", "pgd", 0.1, 0, range(30)),
             ("bio", "T1", "pgd", 0.0, 1, ()), ("bio", "T1", "pgd", 0.1, 1, range(28)),
             ("bp", "T1", "pgd", 0.0, 0, ()), ("bp", "T1", "pgd", 0.1, 0, range(10))]
    headline = write_run(tmp_path / "run", cells)
    accuracy = {("bio", 0): 0.975, ("bio", 1): 0.9712, ("bp", 0): 0.9801}
    rows = [dataclasses.replace(row(m, "none", "fgsm", 0.0, round(a * 10000), s, 10000, "single-step"), clean_acc=a)
            for (m, s), a in accuracy.items()]
    (tmp_path / "clean").mkdir()
    write_csv(to_frame(rows), tmp_path / "clean" / "results.csv")
    extra = f'\n[clean]\nrun = "{tmp_path / "clean"}"\nsuite = "suites/hand-clean.toml"\n'
    result = invoke(write_spec(tmp_path, spec_text(headline) + extra), "--resamples", "200")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "findings.md").read_text()
    answer = page.split('<a id="answer">')[1].split('<a id="headline">')[0]
    assert "bio 2 seeds (0, 1), bp 1 seed" in answer
    assert "one trained pair" in answer  # bio and bp share seed 0 only
    bio = seed_summary([0.975, 0.9712], n=10000)
    assert bio.low < 0.9712 and bio.high > 0.975  # two seeds 0.4 points apart: wider than either's Wilson
    assert ("Clean accuracy on all 10000 test images" in answer
            and f"bio {with_interval(bio.mean, bio.low, bio.high)} % (2 seeds (0, 1): 97.5, 97.1)" in answer)
    bp = seed_summary([0.9801], n=10000)
    assert f"bp {with_interval(bp.mean, bp.low, bp.high)} % (1 seed: 98.0)" in answer
    assert "`suites/hand-clean.toml`" in page.split('<a id="reproduce">')[1]
    wrong = spec_text(headline) + extra.replace("run = ", 'bogus = 1\nrun = ')
    bad = invoke(write_spec(tmp_path, wrong))
    assert bad.exit_code == 2 and "clean.bogus" in bad.output
