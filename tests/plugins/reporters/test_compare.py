"""``harness compare``: paired differences from per-image outcomes, on hand-made runs whose counts are
known, across two runs, its errors, and on the shared small run."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.results.diagnostics import WORST, annotate
from harness.results.stats import MCNEMAR, TWO_LEVEL, mcnemar_exact
from harness.results.table import Row, to_frame, write_csv
from harness.testing import assert_one_line_error
from harness_reporters.paired import CLEAN, compare

N = 40


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def row(model, defense, attack, eps, robust_count, seed=0, n=N, kind="iterative") -> Row:
    return Row(suite="hand", dataset="mnist", model=model, architecture="repu", learners="l", defense=defense,
               defense_name="logit-scale", logit_view=True, T=1.0 if defense == "T1" else 1e5, attack=attack, attack_name=attack,
               backend="torchattacks", attack_kind=kind, norm="linf", attack_params="{}", eps=eps, seed=seed, n=n,
               clean_acc=min(36, n) / n, robust_acc=robust_count / n, zero_grad_share=0.0, nonfinite_grad_share=0.0,
               converged_gap=float("nan"), seconds=1.0, status="ok", error="",
               config_hash=f"{model}{defense}{attack}{eps:g}s{seed}n{n}".replace(".", ""), model_hash="h", device="cpu")


def write_run(directory, cells, n=N):
    """cells: (model, defense, attack, eps, seed, robust image ids). Clean: the first 36 images right."""
    import torch
    from safetensors.torch import save_file

    examples = directory / "examples"
    examples.mkdir(parents=True)
    rows = []
    for model, defense, attack, eps, seed, robust_ids in cells:
        clean = min(36, n)
        r = row(model, defense, attack, eps, len(robust_ids) if eps > 0 else clean, seed, n)
        robust = torch.zeros(n, dtype=torch.uint8)
        robust[list(robust_ids if eps > 0 else range(clean))] = 1
        correct = (torch.arange(n) < clean).to(torch.uint8)
        save_file({"correct": correct, "robust": robust}, str(examples / f"{r.config_hash}.safetensors"))
        rows.append(r)
    write_csv(annotate(to_frame(rows), examples), directory / "results.csv")
    return directory


# bio survives PGD at 0.1 on images 0-29 through T1 and 0-19 through T1e5; bp on 0-9 and 0-4 plus 30-33:
# worst case (both T pooled): bio 0-19 (20), bp 0-4 (5); bio only 15, bp only 0 image.
CELLS = [("bio", "T1", "pgd", 0.0, 0, ()), ("bio", "T1", "pgd", 0.1, 0, range(30)),
         ("bio", "T1e5", "pgd", 0.1, 0, range(20)),
         ("bp", "T1", "pgd", 0.0, 0, ()), ("bp", "T1", "pgd", 0.1, 0, range(10)),
         ("bp", "T1e5", "pgd", 0.1, 0, [*range(5), 30, 31, 32, 33])]


def line(frame, attack, defense=None):
    hit = frame[(frame["attack"] == attack) & ((frame["defense"] == defense) if defense else True)]
    assert len(hit) == 1, (attack, defense, frame)
    return SimpleNamespace(**hit.iloc[0].to_dict())


def test_paired_counts_difference_and_mcnemar_on_a_hand_made_run(tmp_path):
    frame = compare(write_run(tmp_path / "run", CELLS), "bio", "bp", resamples=2000)
    assert list(frame["attack"]) == [CLEAN, "pgd", "pgd", WORST]
    t1 = line(frame, "pgd", "T1")
    assert (t1.acc_a, t1.acc_b, t1.only_a, t1.only_b) == (30 / N, 10 / N, 20, 0)
    assert t1.p_value == pytest.approx(2 * 0.5 ** 20) and t1.diff == pytest.approx(0.5) and t1.test == MCNEMAR
    assert t1.low <= t1.diff <= t1.high and t1.low > 0.3
    t1e5 = line(frame, "pgd", "T1e5")
    assert (t1e5.only_a, t1e5.only_b) == (15, 4) and t1e5.p_value == pytest.approx(mcnemar_exact(15, 4))
    worst = line(frame, WORST)
    assert worst.defense == "T1+T1e5" and (worst.acc_a, worst.acc_b) == (20 / N, 5 / N)
    assert (worst.only_a, worst.only_b) == (15, 0) and worst.low > 0
    clean = line(frame, CLEAN)
    assert clean.eps == 0 and clean.diff == 0 and clean.p_value == 1.0 and clean.low == clean.high == 0


def test_the_command_prints_accuracies_differences_intervals_and_p_values(tmp_path):
    run = write_run(tmp_path / "run", CELLS)
    result = invoke(run, "bio", "bp", "--resamples", "1000", "--csv", tmp_path / "cmp.csv")
    assert result.exit_code == 0, result.output
    assert "bio vs bp" in result.output and "95 % interval" in result.output
    assert "exact McNemar test on the images exactly one model gets right (one seed)" in result.output
    worst = next(text for text in result.output.splitlines() if WORST in text)
    assert "50.0" in worst and "12.5" in worst and "+37.5" in worst and "15 / 0" in worst
    table = pd.read_csv(tmp_path / "cmp.csv")
    assert len(table) == 4 and table["p_value"].between(0, 1).all()


def test_models_from_two_runs_pool_their_seeds(tmp_path):
    seed0 = write_run(tmp_path / "a", [("bio", "T1", "pgd", 0.1, 0, range(30)), ("bio", "T1", "pgd", 0.1, 1, range(25))])
    seed1 = write_run(tmp_path / "b", [("bp", "T1", "pgd", 0.1, 0, range(10)), ("bp", "T1", "pgd", 0.1, 1, range(20))])
    frame = compare(seed0, "bio", "bp", against=seed1, resamples=1000)
    pgd = line(frame, "pgd")
    assert pgd.seeds == 2 and pgd.images == N and pgd.unpaired == ""
    assert (pgd.only_a, pgd.only_b) == (20 + 5, 0) and pgd.acc_a == pytest.approx(55 / 80)
    # two seeds: the two-level bootstrap; every image that differs favours bio, so a resample reaches
    # a difference <= 0 only when it draws seed 1 (5 images differ) twice and misses those images
    assert pgd.test == TWO_LEVEL and pgd.p_floor == pytest.approx(2 / 1001)
    assert pgd.p_floor <= pgd.p_value < 0.01 and pgd.low > 0
    result = invoke(seed0, "bio", "bp", "--against", seed1, "--resamples", "500")
    assert result.exit_code == 0 and "bio vs b:bp" in result.output, result.output
    assert "two-level: bootstrap resampling seeds" in result.output


def test_seeds_without_a_partner_are_named_not_dropped_silently(tmp_path):
    a = write_run(tmp_path / "a", [("bio", "T1", "pgd", 0.1, 0, range(30)), ("bio", "T1", "pgd", 0.1, 1, range(25))])
    b = write_run(tmp_path / "b", [("bp", "T1", "pgd", 0.1, 7, range(10))])
    pgd = line(compare(a, "bio", "bp", against=b, resamples=1000), "pgd")
    assert pgd.seeds == 1 and pgd.unpaired == "bio seed 1" and pgd.test == MCNEMAR
    assert (pgd.acc_a, pgd.acc_b) == (30 / N, 10 / N)  # bio's seed 0 against bp's seed 7
    result = invoke(a, "bio", "bp", "--against", b, "--resamples", "500")
    assert result.exit_code == 0 and "seeds left out, without a partner on the other side: bio seed 1" in \
        result.output, result.output


def test_a_defense_filter_keeps_the_worst_case_over_its_whole_pool(tmp_path):
    """--defense T1 shows the lines through T1 and the worst case pooling it, still pooled over T1e5."""
    run = write_run(tmp_path / "run", CELLS)
    full = line(compare(run, "bio", "bp", resamples=1000), WORST)
    for defense in ("T1", "T1e5"):
        frame = compare(run, "bio", "bp", defenses=(defense,), resamples=1000)
        assert set(frame["defense"]) == {defense, "T1+T1e5"}, frame
        worst = line(frame, WORST)
        assert worst.defense == "T1+T1e5" and (worst.acc_a, worst.acc_b) == (20 / N, 5 / N)
        assert (worst.only_a, worst.only_b, worst.p_value) == (full.only_a, full.only_b, full.p_value)


def test_errors_are_one_line(tmp_path):
    run = write_run(tmp_path / "run", CELLS)
    assert_one_line_error(invoke(run, "bio", "bpp"), "no successful rows of model 'bpp'", "did you mean 'bp'?")
    assert_one_line_error(invoke(tmp_path / "nowhere", "bio", "bp"), "no results table")
    other = write_run(tmp_path / "other", [("bp", "T1", "pgd", 0.1, 0, range(10))], n=30)
    assert_one_line_error(invoke(run, "bio", "bp", "--against", other), "different images", "test_size")
    assert_one_line_error(invoke(run, "bio", "bp", "--defense", "T9"), "no rows with defense T9")
    digest = row("bp", "T1", "pgd", 0.1, 10).config_hash
    (run / "examples" / f"{digest}.safetensors").unlink()  # an ok row whose outcomes are gone
    assert_one_line_error(invoke(run, "bio", "bp"), "per-image outcomes missing",
                          f"delete the row with config_hash {digest}")


def test_help():
    result = CliRunner().invoke(cli, ["compare", "--help"])
    assert result.exit_code == 0 and "--against" in result.output and "McNemar" in result.output


def test_bio_vs_bp_on_the_small_run(small_run):
    _, results, directory = small_run
    frame = compare(directory, "bio", "bp", resamples=1000)
    worst = frame[frame["attack"] == WORST]
    assert sorted(worst["eps"]) == [0.1, 0.2]
    stored = results[(results["attack"] == WORST) & (results["model"] == "bio")].set_index("eps")["robust_acc"]
    for item in worst.itertuples():
        assert item.acc_a == pytest.approx(stored[item.eps], abs=1e-6)  # the run's own worst case
        assert item.low <= item.diff <= item.high and 0 <= item.p_value <= 1
        assert item.images == 500 and item.seeds == 1
    masked = frame[(frame["defense"] == "T1") & (frame["eps"] > 0)]  # the Bio net hides its gradient at T = 1
    assert len(masked) and (masked["flag_a"] == "meaningless").all()
    assert not masked["flag_b"].str.contains("meaningless").any()  # BP sees its gradient at T = 1
