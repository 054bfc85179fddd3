"""The thesis's qualitative claims (harness_reporters.reference.CLAIMS) are checked against results
rows: each check agrees, disagrees, or says n/a when the run lacks the rows it needs."""

from __future__ import annotations

import pandas as pd
import pytest

from harness_reporters import reference as ref
from harness_reporters.report_claims import AGREE, CHECKS, DISAGREE, NA, check_claims, thesis_accuracy


def row(model, attack, T, eps, acc, clean=0.98, zero=0.0, defense="logit-scale"):
    """A results row; ``acc`` is the robust accuracy among the clean-correct images (robust_acc_cc),
    robust_acc the all-image figure that follows from it."""
    return {"dataset": "mnist", "model": model, "defense_name": defense, "logit_view": defense in ("logit-scale", "none"),
            "attack_name": attack, "norm": "linf",
            "T": T, "eps": eps, "robust_acc": acc * clean, "robust_acc_cc": acc, "clean_acc": clean,
            "zero_grad_share": zero}


def frame(*rows):
    return pd.DataFrame(list(rows))


def test_every_claim_has_a_check_and_a_source():
    assert {c.key for c in ref.CLAIMS} == set(CHECKS)
    assert all(c.source.startswith("§") for c in ref.CLAIMS)


def test_fgsm_claims():
    rows = frame(row("bio", "fgsm", 1e5, 0.1, 0.7), row("bio", "fgsm", 1e5, 0.3, 0.08),
                 row("bp", "fgsm", 1e5, 0.1, 0.4), row("bp", "fgsm", 1e5, 0.3, 0.02),
                 row("bio", "fgsm", 1e6, 0.1, 0.75))
    verdicts = {c.key: v for c, v, _ in check_claims(rows)}
    assert verdicts["fgsm_bio_slower"] == AGREE
    assert verdicts["fgsm_both_below_10"] == AGREE
    assert verdicts["fgsm_larger_T_helps_bio"] == AGREE
    # Bio at 13 %: not below 10 %; a larger T that lowers Bio's accuracy does not help it; Bio below BP
    rows.loc[1, "robust_acc_cc"], rows.loc[4, "robust_acc_cc"], rows.loc[0, "robust_acc_cc"] = 0.13, 0.25, 0.3
    verdicts = {c.key: (v, e) for c, v, e in check_claims(rows)}
    assert verdicts["fgsm_both_below_10"][0] == DISAGREE and "13.0 %" in verdicts["fgsm_both_below_10"][1]
    assert verdicts["fgsm_larger_T_helps_bio"][0] == DISAGREE
    assert verdicts["fgsm_bio_slower"][0] == DISAGREE


def test_robust_accuracy_is_counted_among_the_clean_correct_images():
    """As the thesis counts it (appendix A, torch_attack): Bio gets few images right, so its all-image
    robust accuracy is low although it keeps more of the images it gets right than BP does."""
    rows = frame(row("bio", "fgsm", 1e5, 0.1, 0.5, clean=0.6), row("bio", "fgsm", 1e5, 0.3, 0.12, clean=0.6),
                 row("bp", "fgsm", 1e5, 0.1, 0.4), row("bp", "fgsm", 1e5, 0.3, 0.02))
    verdicts = {c.key: (v, e) for c, v, e in check_claims(rows)}
    assert verdicts["fgsm_bio_slower"][0] == AGREE            # all images: Bio 30 % < BP 39.2 % at 0.1
    assert verdicts["fgsm_both_below_10"][0] == DISAGREE      # all images: Bio 7.2 % at 0.3
    assert "Bio lowest 12.0 %" in verdicts["fgsm_both_below_10"][1]
    assert "clean-correct" in verdicts["fgsm_bio_slower"][1]
    # a table written before robust_acc_cc: the all-image figures, and the evidence says so
    older = {c.key: (v, e) for c, v, e in check_claims(rows.drop(columns="robust_acc_cc"))}
    assert older["fgsm_bio_slower"][0] == DISAGREE and older["fgsm_both_below_10"][0] == AGREE
    assert "not the thesis's denominator" in older["fgsm_both_below_10"][1]


def test_thesis_accuracy_leaves_out_rows_without_a_correct_image():
    rows = frame(row("bio", "pgd", 1e5, 0.5, 0.5), row("bp", "pgd", 1e5, 0.5, float("nan"), clean=0.0))
    acc, base = thesis_accuracy(rows)
    assert acc.iloc[0] == 0.5 and acc.isna().iloc[1] and "clean-correct" in base  # not a table too old
    rows.loc[0, "robust_acc_cc"] = float("nan")  # correct images but no robust_acc_cc: an older table
    acc, base = thesis_accuracy(rows)
    assert acc.tolist()[0] == rows.loc[0, "robust_acc"] and "predates" in base


def test_bio_pgd_against_bp_fgsm_names_the_eps_where_it_fails():
    rows = frame(row("bio", "pgd", 1e5, 0.05, 0.8), row("bio", "pgd", 1e5, 0.1, 0.6),
                 row("bp", "fgsm", 1e5, 0.05, 0.9), row("bp", "fgsm", 1e5, 0.1, 0.5))
    verdict, evidence = CHECKS["bio_pgd_above_bp_fgsm"](rows)
    assert verdict == DISAGREE and "; not at ε = 0.05 (robust accuracy among the clean-correct" in evidence
    assert CHECKS["bio_pgd_above_bp_fgsm"](rows[rows["eps"] == 0.1])[0] == AGREE


def test_zero_gradient_share_and_clean_accuracy():
    rows = frame(row("bio", "fgsm", 1, 0.1, 0.9, clean=0.977, zero=0.95), row("bp", "fgsm", 1, 0.1, 0.9, clean=0.982, zero=0.7),
                 row("bio", "fgsm", 10, 0.1, 0.9, clean=0.977, zero=0.4), row("bp", "fgsm", 10, 0.1, 0.9, clean=0.982, zero=0.1))
    assert CHECKS["zero_grad_falls_faster_bp"](rows)[0] == AGREE
    assert CHECKS["clean_comparable"](rows) == (AGREE, "Bio 97.7 %, BP 98.2 %: BP +0.5 pt")
    # a defense that changes predictions has its own clean accuracy: not the net's
    defended = pd.concat([rows, frame(row("bio", "fgsm", 1, 0.1, 0.5, clean=0.5, defense="some-filter"))])
    assert CHECKS["clean_comparable"](defended) == (AGREE, "Bio 97.7 %, BP 98.2 %: BP +0.5 pt")
    rows.loc[3, "zero_grad_share"] = 0.5  # BP still masked more than Bio at T = 10
    assert CHECKS["zero_grad_falls_faster_bp"](rows)[0] == DISAGREE
    rows["clean_acc"] = [0.95, 0.98, 0.95, 0.98]
    assert CHECKS["clean_comparable"](rows)[0] == DISAGREE


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_missing_rows_give_na(key):
    rows = frame(row("other", "pgd", 1e5, 0.1, 0.5))
    assert CHECKS[key](rows)[0] == NA
