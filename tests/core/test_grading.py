"""Per-row, graded masking flags (harness/results/diagnostics.py) on hand-made tables with real per-image
outcome files: which rows each check flags, the paired convergence test, the grades' columns, the
worst case, and the reasons the terminal lists."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from harness.results import diagnostics
from harness.results.table import COLUMNS, flag_notes, line_flag, summary_table

N = 200


def outcome(robust_count: int, n: int = N) -> torch.Tensor:
    """n images, the first ``robust_count`` robust."""
    return (torch.arange(n) < robust_count).to(torch.uint8)


def make_run(tmp_path, cells, zero_grad=(0.0, 0.0)):
    """A results table of one model, two logit rescalings (T1, T1e5), with per-image outcomes.
    ``cells``: (defense, attack, kind, eps, robust count, 2x-steps robust count or None)."""
    examples = tmp_path / "examples"
    examples.mkdir(exist_ok=True)
    rows = []
    for i, (defense, attack, kind, eps, robust, longer) in enumerate(cells):
        digest = f"cell{i}"
        tensors = {"correct": outcome(180), "robust": outcome(robust if eps > 0 else 180)}
        gap = float("nan")
        if longer is not None:
            tensors[diagnostics.LONGER] = outcome(longer)
            gap = (robust - longer) / N
        save_file(tensors, str(examples / f"{digest}.safetensors"))
        row = {c: "" for c in COLUMNS}
        row.update(dataset="mnist", model="bio", seed=0, defense=defense, defense_name="logit-scale", logit_view=True,
                   T=1.0 if defense == "T1" else 1e5, attack=attack, attack_name=attack, attack_kind=kind,
                   norm="linf", eps=eps, n=N, clean_acc=0.9, robust_acc=(robust if eps > 0 else 180) / N,
                   zero_grad_share=zero_grad[defense != "T1"], nonfinite_grad_share=0.0, converged_gap=gap,
                   seconds=1.0, status="ok", config_hash=digest, unreliable=False)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return diagnostics.annotate(frame, examples)


def pick(frame, defense, attack, eps):
    hit = frame[(frame["defense"] == defense) & (frame["attack"] == attack) & (frame["eps"] == eps)]
    assert len(hit) == 1, (defense, attack, eps)
    return hit.iloc[0]


def test_a_convergence_gap_flags_only_that_attack_at_that_eps_and_the_worst_case_there(tmp_path):
    # PGD at 0.1 through T1e5: 16 images broken by 2x steps, none the other way (8 points, p ~ 3e-5)
    cells = [("T1e5", "fgsm", "single-step", 0.0, 0, None), ("T1e5", "pgd", "iterative", 0.0, 0, None),
             ("T1e5", "fgsm", "single-step", 0.1, 140, None), ("T1e5", "pgd", "iterative", 0.1, 120, 104),
             ("T1e5", "fgsm", "single-step", 0.2, 100, None), ("T1e5", "pgd", "iterative", 0.2, 60, 60)]
    frame = make_run(tmp_path, cells)
    flagged = pick(frame, "T1e5", "pgd", 0.1)
    assert flagged["chk_converged"] and flagged["unreliable"] and flagged["meaningless"] == ""
    assert "≥ 8.0 points lower with 2× steps" in flagged["upper_bound"] and "McNemar p" in flagged["upper_bound"]
    worst = pick(frame, "T1e5", diagnostics.WORST, 0.1)
    assert worst["upper_bound"] == flagged["upper_bound"] and worst["unreliable"]
    quiet = [pick(frame, "T1e5", "fgsm", 0.1), pick(frame, "T1e5", "pgd", 0.2), pick(frame, "T1e5", "pgd", 0.0),
             pick(frame, "T1e5", "fgsm", 0.0), pick(frame, "T1e5", diagnostics.WORST, 0.2)]
    for row in quiet:
        assert not row["unreliable"] and row["reasons"] == "" and not row["chk_converged"], row["attack"]


def test_a_gap_that_sampling_noise_explains_is_not_flagged(tmp_path):
    # 5 of 200 images (2.5 points) broken by 2x steps and none the other way: McNemar p = 0.0625
    frame = make_run(tmp_path, [("T1e5", "pgd", "iterative", 0.1, 120, 115)])
    row = pick(frame, "T1e5", "pgd", 0.1)
    assert row["converged_gap"] == pytest.approx(0.025) and not row["chk_converged"] and not row["unreliable"]


def test_without_per_image_2x_outcomes_the_fixed_threshold_still_applies():
    table = pd.DataFrame({"dataset": ["d"], "model": ["m"], "seed": [0], "defense": ["none"], "norm": ["linf"],
                          "attack": ["pgd"], "attack_kind": ["iterative"], "eps": [0.1], "robust_acc": [0.5],
                          "zero_grad_share": [0.0], "nonfinite_grad_share": [0.0], "converged_gap": [0.03],
                          "config_hash": ["x"]})
    (finding,) = diagnostics.check_converged(table)
    assert finding.index == (0,) and "≥ 3.0 points lower with 2× steps" in finding.reason


def test_zero_gradients_flag_the_gradient_based_rows_of_that_view_only(tmp_path):
    cells = [("T1", "pgd", "iterative", 0.0, 0, None), ("T1", "fgsm", "single-step", 0.1, 170, None),
             ("T1", "pgd", "iterative", 0.1, 170, None), ("T1", "noise", "baseline", 0.1, 178, None),
             ("T1", "square", "gradient-free", 0.1, 150, None),
             ("T1e5", "fgsm", "single-step", 0.1, 120, None), ("T1e5", "pgd", "iterative", 0.1, 90, None)]
    frame = make_run(tmp_path, cells, zero_grad=(0.9, 0.0))
    for attack in ("fgsm", "pgd"):
        row = pick(frame, "T1", attack, 0.1)
        assert row["chk_gradients"] and "exactly zero" in row["meaningless"] and row["upper_bound"] == ""
    # the gradient-free attack beat every white-box one through T1, which is meaningless twice over
    assert "gradient-free attack" in pick(frame, "T1", "pgd", 0.1)["meaningless"]
    for defense, attack, eps in [("T1", "pgd", 0.0), ("T1", "noise", 0.1), ("T1", "square", 0.1),
                                 ("T1e5", "fgsm", 0.1), ("T1e5", "pgd", 0.1)]:
        assert not pick(frame, defense, attack, eps)["unreliable"], (defense, attack, eps)
    # T1e5 attacked the same model unmasked: the pooled worst case is sound
    worst = pick(frame, "T1+T1e5", diagnostics.WORST, 0.1)
    assert not worst["unreliable"] and worst["robust_acc"] == pytest.approx(90 / N)


def test_a_worst_case_over_blind_views_only_is_meaningless(tmp_path):
    cells = [("T1", "fgsm", "single-step", 0.1, 170, None), ("T1", "pgd", "iterative", 0.1, 170, None),
             ("T1", "noise", "baseline", 0.1, 178, None)]
    frame = make_run(tmp_path, cells, zero_grad=(0.9, 0.0))
    worst = pick(frame, "T1", diagnostics.WORST, 0.1)
    assert worst["chk_gradients"] and "exactly zero" in worst["meaningless"] and worst["unreliable"]


def test_terminal_summary_names_grades_and_lists_each_reason_with_its_rows(tmp_path):
    cells = [("T1", "pgd", "iterative", 0.0, 0, None), ("T1", "fgsm", "single-step", 0.1, 170, None),
             ("T1", "pgd", "iterative", 0.1, 170, None), ("T1", "pgd", "iterative", 0.2, 160, None),
             ("T1e5", "pgd", "iterative", 0.1, 120, 100), ("T1e5", "pgd", "iterative", 0.2, 60, 60)]
    frame = make_run(tmp_path, cells, zero_grad=(0.9, 0.0))
    notes = flag_notes(frame)
    assert len(notes) == 2, notes
    masked = next(n for n in notes if n.startswith("meaningless"))
    assert "90.0% of input gradients" in masked and "(bio/T1 seed 0: fgsm (eps 0.1), pgd (eps 0.1, 0.2))" in masked
    bound = next(n for n in notes if n.startswith("upper bound"))
    assert "≥ 10.0 points lower with 2× steps" in bound and "bio/T1e5 seed 0: pgd (eps 0.1)" in bound
    assert "bio/T1+T1e5 seed 0: worst-case (eps 0.1)" in bound  # the pooled worst case there
    summary = summary_table(frame).set_index(["defense", "attack"])
    assert summary.loc[("T1", "pgd"), "flag"] == "meaningless"
    assert summary.loc[("T1e5", "pgd"), "flag"] == "upper bound at eps 0.1"
    assert summary.loc[("T1+T1e5", diagnostics.WORST), "flag"] == "upper bound at eps 0.1"


def test_line_flag_is_empty_for_a_clean_line():
    rows = pd.DataFrame({"eps": [0.0, 0.1], "meaningless": ["", ""], "upper_bound": ["", ""]})
    assert line_flag(rows) == ""
    rows.loc[1, "meaningless"] = "masked"
    assert line_flag(rows) == "meaningless"


def test_harness_results_prints_the_reasons_under_the_table(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.results.table import write_csv

    cells = [("T1", "pgd", "iterative", 0.1, 170, None), ("T1e5", "pgd", "iterative", 0.1, 120, 100)]
    write_csv(make_run(tmp_path, cells, zero_grad=(0.9, 0.0)), tmp_path / "results.csv")
    result = CliRunner().invoke(cli, ["results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table_end = max(i for i, text in enumerate(lines) if text.startswith("└"))
    notes = [text.strip() for text in lines[table_end + 1:] if text.startswith("  ")]
    assert notes == [
        "meaningless: 90.0% of input gradients are exactly zero or not finite (bio/T1 seed 0: pgd (eps 0.1))",
        "upper bound: pgd at linf eps=0.1: ≥ 10.0 points lower with 2× steps (McNemar p < 1e-4, 200 images) "
        "(bio/T1+T1e5 seed 0: worst-case (eps 0.1); bio/T1e5 seed 0: pgd (eps 0.1))"]


def test_leaderboard_lines_carry_only_their_own_flags_and_an_interval(tmp_path):
    from harness.results.table import write_csv
    from harness.results.stats import proportion_interval
    from harness_reporters.leaderboard import leaderboard

    cells = [("T1", "pgd", "iterative", 0.1, 170, None), ("T1", "pgd", "iterative", 0.2, 160, None),
             ("T1e5", "pgd", "iterative", 0.1, 120, 100), ("T1e5", "pgd", "iterative", 0.2, 60, 60)]
    write_csv(make_run(tmp_path, cells, zero_grad=(0.9, 0.0)), tmp_path / "results.csv")
    board = leaderboard([tmp_path]).set_index("eps")
    at1, at2 = board.loc[0.1], board.loc[0.2]
    assert at1["unreliable"] and at1["flag"] == "upper bound" and "≥ 10.0 points lower" in at1["reasons"]
    assert "exactly zero" not in at1["reasons"]  # T1 is masked, but T1e5 attacked the same model unmasked
    assert not at2["unreliable"] and at2["flag"] == "" and at2["reasons"] == ""
    assert (at2["robust_low"], at2["robust_high"]) == pytest.approx(proportion_interval(60, N))
    assert math.isnan(at2["robust_sd"])


def test_a_gradient_free_attack_flags_each_white_box_row_it_beats(tmp_path):
    # Square leaves 40 of 200; AutoAttack 38 (stronger: not flagged), PGD 110 and FGSM 150 (flagged,
    # each on its own, although AutoAttack beat Square at the same eps and view)
    cells = [("T1e5", "square", "gradient-free", 0.1, 80, None), ("T1e5", "autoattack", "iterative", 0.1, 76, None),
             ("T1e5", "pgd", "iterative", 0.1, 110, None), ("T1e5", "fgsm", "single-step", 0.1, 150, None)]
    frame = make_run(tmp_path, cells)
    for attack in ("pgd", "fgsm"):
        row = pick(frame, "T1e5", attack, 0.1)
        assert row["chk_gradient_free"] and f"beat {attack}" in row["meaningless"], attack
    for attack in ("autoattack", "square"):
        assert not pick(frame, "T1e5", attack, 0.1)["chk_gradient_free"], attack
    # this view ran no eps >= 0.5 and no noise: those checks are listed as not run, not as passed
    skipped = pick(frame, "T1e5", "autoattack", 0.1)["checks_skipped"]
    assert "large_eps" in skipped and "noise" in skipped and "gradient_free" not in skipped


def test_grade_text_separates_none_found_from_not_checked():
    assert diagnostics.grade_text("", "") == "none found"
    assert diagnostics.grade_text("", "large_eps, noise") == "none found; not checked: large_eps, noise"
    assert diagnostics.grade_text("meaningless", "noise") == "meaningless; not checked: noise"
    assert diagnostics.skipped_union(["noise, large_eps", "", float("nan"), "gradient_free"]) == \
        "gradient_free, large_eps, noise"


def test_regrade_rewrites_the_grades_of_a_finished_run_not_its_numbers(tmp_path):
    import shutil
    from pathlib import Path

    from harness.results.regrade import regrade
    from harness.results.table import read_results

    source = Path(__file__).resolve().parents[2] / "results" / "thesis-strong"
    copy = tmp_path / "thesis-strong"
    shutil.copytree(source, copy)
    before = read_results(copy)
    regrade(copy)
    after = read_results(copy)
    assert list(after["robust_acc"]) == list(before["robust_acc"])
    pgd = after[(after["model"] == "bio") & (after["attack"] == "pgd") & (after["defense"] == "T1e5")
                & (after["eps"] == 0.15)].iloc[0]
    # Square leaves 11.4 % where the thesis's PGD-40 leaves 57.1 %: that PGD number is graded
    assert pgd["chk_gradient_free"] and "beat pgd (57.1%)" in pgd["meaningless"]


def test_a_pooled_worst_case_is_graded_by_its_best_checked_sound_member(tmp_path):
    """T1 ran PGD only (no gradient-free, noise or large-eps rows there); T1e5 ran AutoAttack beside Square,
    noise and eps 0.5. The worst case pools both views and is meaningless only if every member is, so
    AutoAttack through T1e5, checked and sound, grades it: those three checks count as run for it."""
    cells = [("T1", "pgd", "iterative", 0.1, 170, None), ("T1e5", "autoattack", "iterative", 0.1, 76, None),
             ("T1e5", "square", "gradient-free", 0.1, 80, None), ("T1e5", "noise", "baseline", 0.1, 170, None),
             ("T1e5", "autoattack", "iterative", 0.5, 0, None)]
    frame = make_run(tmp_path, cells)
    alone = set(pick(frame, "T1", "pgd", 0.1)["checks_skipped"].split(", "))
    assert {"gradient_free", "large_eps", "noise"} <= alone
    checked = set(pick(frame, "T1e5", "autoattack", 0.1)["checks_skipped"].split(", ")) - {""}
    assert not {"gradient_free", "large_eps", "noise"} & checked
    pooled = set(pick(frame, "T1+T1e5", diagnostics.WORST, 0.1)["checks_skipped"].split(", ")) - {""}
    meaningless = {name for name, grade in diagnostics.GRADE.items() if grade == diagnostics.MEANINGLESS}
    upper = (alone | checked) & set(diagnostics.POOLED_UPPER)
    assert pooled == (checked & meaningless) | upper
    assert "single_step" not in pooled  # the pool holds every single step itself
    # with no sound member, the best-checked member grades it all the same
    assert diagnostics.pooled_skipped(["noise, large_eps", "noise"], [False, False]) == "noise"
    assert diagnostics.pooled_skipped(["noise, converged", "gradient_free"], [True, False]) == "converged, noise"
