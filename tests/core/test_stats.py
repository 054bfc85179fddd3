"""harness/results/stats.py against published and hand-computed values, and the interval columns of results.csv."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.results import stats


def test_wilson_interval_matches_newcombe_1998():
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I: 81/263,
    # Wilson score interval 0.2553 to 0.3662
    low, high = stats.proportion_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)


def test_wilson_interval_of_zero_successes_has_its_closed_form():
    low, high = stats.proportion_interval(0, 10)
    z2 = 1.959963984540054 ** 2
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(z2 / (10 + z2), rel=1e-9)


def test_accuracy_interval_recovers_the_count_and_handles_no_images():
    assert stats.accuracy_interval(81 / 263, 263) == stats.proportion_interval(81, 263)
    assert all(math.isnan(v) for v in stats.accuracy_interval(0.5, 0))
    assert all(math.isnan(v) for v in stats.accuracy_interval(float("nan"), 10))


def test_mcnemar_exact_against_a_hand_computed_case():
    # 1 discordant pair one way, 9 the other: p = 2 * P(Bin(10, 1/2) <= 1) = 2 * 11 / 1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(22 / 1024, rel=1e-12)
    assert stats.mcnemar_exact(5, 5) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0


def test_seed_summary_is_the_student_t_interval():
    summary = stats.seed_summary([0.5, 0.6, 0.7])
    # mean 0.6, sd 0.1, t(0.975, 2) = 4.302653: 0.6 +- 4.302653 * 0.1 / sqrt(3)
    half = 4.302652729749464 * 0.1 / math.sqrt(3)
    assert summary.seeds == 3 and summary.mean == pytest.approx(0.6) and summary.sd == pytest.approx(0.1)
    assert (summary.low, summary.high) == pytest.approx((0.6 - half, 0.6 + half))
    one = stats.seed_summary([0.4])
    assert one.seeds == 1 and one.mean == 0.4 and math.isnan(one.sd) and math.isnan(one.low)
    assert stats.seed_summary([0.3, 0.3]).low == 0.3  # no spread, no width


def test_seed_summary_of_an_accuracy_stays_inside_0_and_1():
    # robust accuracies of 0.4 %, 0.2 % and 4.2 % over 500 images (sweep-400's base net at eps 0.15):
    # the t-interval alone reaches below zero, an accuracy's interval does not
    bare, clipped = stats.seed_summary([0.004, 0.002, 0.042]), stats.seed_summary([0.004, 0.002, 0.042], n=500)
    assert bare.low < 0 and clipped.low == 0.0 and clipped.high == pytest.approx(bare.high)
    near_one = stats.seed_summary([1.0, 0.99, 0.94], n=500)
    assert near_one.high == 1.0 and stats.seed_summary([1.0, 0.99, 0.94]).high > 1


def test_seed_summary_with_n_is_never_narrower_than_wilson_over_the_images():
    # seeds that agree: the t-interval has no width; the images still leave Wilson's
    assert (stats.seed_summary([0.3, 0.3], n=200).low, stats.seed_summary([0.3, 0.3], n=200).high) == \
        pytest.approx(stats.proportion_interval(60, 200))
    # seeds close together: t half-width 4.302653 * 0.01 / sqrt(3) = 0.0248 < Wilson's ~0.030 at 610/1000
    close = stats.seed_summary([0.60, 0.61, 0.62], n=1000)
    assert (close.low, close.high) == pytest.approx(stats.proportion_interval(610, 1000))
    assert close.sd == pytest.approx(0.01)
    # seeds far apart: the t-interval is the wider one and stays as it is
    wide, bare = stats.seed_summary([0.5, 0.6, 0.7], n=200), stats.seed_summary([0.5, 0.6, 0.7])
    assert (wide.low, wide.high) == (bare.low, bare.high)
    # one seed: Wilson's interval of that accuracy
    one = stats.seed_summary([0.4], n=50)
    assert (one.low, one.high) == pytest.approx(stats.proportion_interval(20, 50)) and math.isnan(one.sd)


def test_paired_difference_counts_discordant_pairs_and_brackets_the_difference():
    rng = np.random.default_rng(1)
    a = rng.random((2, 400)) < 0.7
    b = a & (rng.random((2, 400)) < 0.8)  # B is A with a fifth of its successes removed
    result = stats.paired_difference(a, b, resamples=2000)
    assert result.images == 400 and result.pairs == 800
    assert result.only_b == 0 and result.only_a == int((a & ~b).sum())
    assert result.diff == pytest.approx(a.mean() - b.mean())
    assert result.low <= result.diff <= result.high and result.low > 0
    # two seeds: the two-level bootstrap; every image that differs favours A, so no resample reaches
    # a difference <= 0: p = 2 * (0 + 1) / (2000 + 1), its floor
    assert result.test == stats.TWO_LEVEL and result.p_value == pytest.approx(2 / 2001)
    assert result.p_value == stats.p_floor(2000) and stats.fmt_p(result.p_value, stats.p_floor(2000)) == "<= 0.001"
    assert stats.paired_difference(a, b, resamples=2000).p_value == result.p_value  # seeded
    same = stats.paired_difference(a[0], a[0])
    assert (same.diff, same.low, same.high, same.p_value, same.test) == (0.0, 0.0, 0.0, 1.0, stats.MCNEMAR)
    with pytest.raises(ValueError, match="pair up"):
        stats.paired_difference(a, b[:, :10])


def test_one_seed_gets_the_exact_mcnemar_test():
    # 5 images only A gets right, 1 only B, 4 both: p = 2 * P(Bin(6, 1/2) <= 1) = 2 * 7 / 64
    a = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    b = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    result = stats.paired_difference(a, b)
    assert result.test == stats.MCNEMAR and (result.only_a, result.only_b) == (5, 1)
    assert result.p_value == pytest.approx(14 / 64, rel=1e-12)


@pytest.mark.slow
def test_two_level_interval_covers_the_truth_where_the_image_only_one_does_not():
    """Synthetic outcomes with a known seed variance: seed s of a net has accuracy p_s = 0.7 + N(0, 0.03)
    and gets image i right when u_i < p_s (u_i uniform: an image hard for one seed is hard for all).
    The quantity estimated is 0.7, the mean over trainings and images. Over 300 repetitions with 5
    seeds and 1 000 images, the two-level 95 % interval covers it about 95 % of the time; an interval
    from the images alone (each image's outcome averaged over the seeds) covers it ~87 % of the time."""
    rng = np.random.default_rng(0)
    covered = {"two-level": 0, "images only": 0}
    repetitions, share = 300, []
    for _ in range(repetitions):
        accuracy = 0.7 + rng.normal(0, 0.03, size=5)
        outcomes = (rng.random(1000)[None, :] < accuracy[:, None]).astype(float)
        both = stats.two_level(outcomes, resamples=999, seed=int(rng.integers(1 << 31)))
        images = stats.two_level(outcomes.mean(axis=0), resamples=999, seed=int(rng.integers(1 << 31)))
        covered["two-level"] += both.low <= 0.7 <= both.high
        covered["images only"] += images.low <= 0.7 <= images.high
        share.append(both.seed_share)
    assert 0.90 <= covered["two-level"] / repetitions <= 0.99
    assert covered["images only"] / repetitions <= covered["two-level"] / repetitions - 0.04
    # seed variance 0.03^2 / 5 against image variance ~0.7 * 0.3 / 1000 * (share not shared by seeds)
    assert 0.3 < np.median(share) < 0.8


def test_two_level_with_one_seed_is_the_image_bootstrap():
    outcomes = (np.random.default_rng(3).random(500) < 0.6).astype(float)
    result = stats.two_level(outcomes, resamples=4000)
    assert result.seeds == 1 and result.seed_share == 0.0
    half = 1.96 * np.sqrt(outcomes.mean() * (1 - outcomes.mean()) / 500)
    assert result.low == pytest.approx(outcomes.mean() - half, abs=0.01)
    assert result.high == pytest.approx(outcomes.mean() + half, abs=0.01)


def test_a_repeated_seed_adds_no_evidence_to_the_p_value():
    """Two seeds that agree on every image give the p-value of one, not that of twice the pairs."""
    a = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    b = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    one = stats.paired_difference(a, b)
    two = stats.paired_difference(np.stack([a, a]), np.stack([b, b]))
    # two identical seeds: no seed spread, so the two-level interval is the images' interval
    assert two.test == stats.TWO_LEVEL and two.seed_share == pytest.approx(0.0, abs=1e-12)
    assert (two.low, two.high) == pytest.approx((one.low, one.high), abs=0.06)
    assert stats.mcnemar_exact(10, 2) < one.p_value / 5  # what counting the pairs would claim


def test_paired_bootstrap_resamples_images_not_image_seed_pairs():
    """Two seeds that agree on every image carry no more evidence than one: same interval."""
    rng = np.random.default_rng(2)
    a, b = rng.random(300) < 0.6, rng.random(300) < 0.5
    one = stats.paired_difference(a, b, resamples=2000, seed=3)
    two = stats.paired_difference(np.stack([a, a]), np.stack([b, b]), resamples=2000, seed=3)
    # one seed: scipy's percentile bootstrap; two: the two-level one, whose seed draws change nothing here
    assert (one.low, one.high) == pytest.approx((two.low, two.high), abs=0.005)
    assert two.seed_share == pytest.approx(0.0, abs=1e-12)


def test_results_csv_gets_interval_columns(tmp_path):
    from harness.results.table import COLUMNS, read_results, write_csv

    frame = pd.DataFrame([{c: "" for c in COLUMNS}]).assign(
        n=263, clean_acc=81 / 263, robust_acc=0.0, eps=0.1, T=1.0, seed=0, zero_grad_share=0.0,
        nonfinite_grad_share=0.0, converged_gap=float("nan"), seconds=1.0, status="ok", unreliable=False)
    write_csv(frame, tmp_path / "results.csv")
    back = read_results(tmp_path)
    assert back["clean_acc_low"].iloc[0] == pytest.approx(0.2553, abs=5e-5)
    assert back["clean_acc_high"].iloc[0] == pytest.approx(0.3662, abs=5e-5)
    assert back["robust_acc_low"].iloc[0] == 0 and back["robust_acc_high"].iloc[0] > 0
    # a table written before these columns existed still reads, with them computed
    old = back.drop(columns=["clean_acc_low", "clean_acc_high", "robust_acc_low", "robust_acc_high",
                             "meaningless", "upper_bound"])
    old.to_csv(tmp_path / "old.csv", index=False)
    again = read_results(tmp_path / "old.csv")
    assert list(again.columns[: len(COLUMNS)]) == COLUMNS
    assert again["clean_acc_low"].iloc[0] == pytest.approx(back["clean_acc_low"].iloc[0], abs=1e-6)
    assert again["meaningless"].iloc[0] == ""


def test_seed_table_uses_the_t_interval_over_seeds_and_wilson_for_one(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.results.table import COLUMNS, read_results, seed_table, write_csv

    def cell(seed, robust, attack="pgd"):
        return {**{c: "" for c in COLUMNS}, "dataset": "mnist", "model": "bio", "defense": "none", "T": 1.0,
                "attack": attack, "backend": "torchattacks", "eps": 0.1, "seed": seed, "n": 200, "clean_acc": 0.9,
                "robust_acc": robust, "zero_grad_share": 0.0, "nonfinite_grad_share": 0.0,
                "converged_gap": float("nan"), "seconds": 1.0, "status": "ok", "unreliable": False}

    rows = [cell(0, 0.50), cell(1, 0.60), cell(2, 0.70), cell(0, 81 / 200, attack="fgsm"),
            cell(0, 0.30, attack="fab"), cell(1, 0.30, attack="fab")]
    write_csv(pd.DataFrame(rows, columns=COLUMNS), tmp_path / "results.csv")
    table = seed_table(read_results(tmp_path)).set_index("attack")
    several, one, agreeing = table.loc["pgd"], table.loc["fgsm"], table.loc["fab"]
    # seeds that agree share the test images: the interval is Wilson's over them, not zero wide
    assert (agreeing["robust_acc_low"], agreeing["robust_acc_high"]) == pytest.approx(
        [100 * v for v in stats.proportion_interval(60, 200)])
    expected = stats.seed_summary([0.5, 0.6, 0.7], n=200)
    assert several["seeds"] == 3 and several["robust_acc"] == pytest.approx(60.0)
    assert several["robust_acc_sd"] == pytest.approx(100 * expected.sd)
    assert (several["robust_acc_low"], several["robust_acc_high"]) == pytest.approx((100 * expected.low,
                                                                                    100 * expected.high))
    assert one["seeds"] == 1 and math.isnan(one["robust_acc_sd"])
    assert (one["robust_acc_low"], one["robust_acc_high"]) == pytest.approx(
        [100 * v for v in stats.proportion_interval(81, 200)], abs=1e-4)
    result = CliRunner().invoke(cli, ["results", str(tmp_path), "--intervals"])
    assert result.exit_code == 0, result.output
    assert "60.0 ± 10.0" in result.output and f"[{100 * expected.low:.1f}, {100 * expected.high:.1f}]" in result.output


def test_several_seeds_also_get_the_paired_t_interval_of_their_per_seed_differences():
    """Beside the two-level bootstrap: Student t over the per-seed mean differences, by hand. Two seeds
    whose differences are 0.2 and 0.3: mean 0.25, sd 0.0707, t(0.975, 1) = 12.706."""
    a = np.zeros((2, 10))
    a[0, :2] = 1  # seed 0: A right on 2 of 10 images B gets wrong
    a[1, :3] = 1  # seed 1: on 3
    b = np.zeros((2, 10))
    result = stats.paired_difference(a, b, resamples=500)
    half = 12.7062 * (0.1 / math.sqrt(2)) / math.sqrt(2)
    assert result.test == stats.TWO_LEVEL and result.diff == pytest.approx(0.25)
    assert (result.t_low, result.t_high) == pytest.approx((0.25 - half, 0.25 + half), abs=1e-4)
    assert result.t_low < result.low  # the bootstrap over two seeds is far narrower
    one = stats.paired_difference(a[0], b[0])
    assert math.isnan(one.t_low) and math.isnan(one.t_high)
