"""The report's "Thesis claims" section: each qualitative claim of the thesis
(:data:`harness_reporters.reference.CLAIMS`) checked against this run's rows and marked agree,
disagree or n/a (the run lacks the rows the claim needs), with the numbers that decided it.

Only MNIST rows of the models keyed ``bio`` and ``bp`` count, clean accuracies are the rows' own (the
test images of this run) through the views that never change a prediction, robust accuracies are
counted as the thesis counts them (among the clean-correct images, :func:`thesis_accuracy`), and "at
T" means the rows of a logit-scale view with that temperature.
"""

from __future__ import annotations

import functools
from typing import Callable

import pandas as pd

from harness_reporters import reference as ref
from harness_reporters.report_format import fmt_T

AGREE, DISAGREE, NA = "agree", "disagree", "n/a"
THESIS_T = ref.ATTACK_T  # every attack of §3.2
# "comparable": both within LEVEL_SLACK of the thesis's ~98 %, BP ahead of Bio by the thesis's
# 0.5 points give or take GAP_SLACK (the harness's tolerances, not the thesis's)
LEVEL_SLACK, GAP_SLACK = 0.015, 0.005
CLEAN_CORRECT = "robust accuracy among the clean-correct images (robust_acc_cc), as the thesis counts it"
ALL_IMAGES = "all-image robust_acc (this table predates robust_acc_cc): not the thesis's denominator"


def thesis_accuracy(rows: pd.DataFrame) -> tuple[pd.Series, str]:
    """(per row, robust accuracy as the thesis counts it; what it is). That is robust_acc_cc, NaN (left
    out of means) for a row with no clean-correct image. A table written before that column has it
    empty although images were correct: then every row's all-image robust_acc, and the text says so."""
    cc = rows["robust_acc_cc"] if "robust_acc_cc" in rows else pd.Series(float("nan"), index=rows.index)
    older = cc.isna() & (rows["clean_acc"] > 0)
    return (rows["robust_acc"], ALL_IMAGES) if older.any() else (cc, CLEAN_CORRECT)


def _on_thesis_accuracy(check):
    """The check sees the rows with an ``acc`` column (thesis_accuracy) and its evidence names it."""
    @functools.wraps(check)
    def wrapped(rows: pd.DataFrame) -> tuple[str, str]:
        acc, base = thesis_accuracy(rows)
        verdict, evidence = check(rows.assign(acc=acc))
        return verdict, evidence if verdict == NA else f"{evidence} ({base})"
    return wrapped


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _curve(rows: pd.DataFrame, model: str, attack: str, T: float) -> pd.Series:
    """The ``acc`` column against eps > 0 (mean over seeds) of one model under one attack plugin at T."""
    picked = rows[(rows["model"] == model) & (rows["attack_name"] == attack) & (rows["norm"] == "linf")
                  & ((rows["T"] / T - 1).abs() < 1e-6) & (rows["eps"] > 0)]
    return picked.groupby("eps")["acc"].mean().dropna().sort_index()


def _listing(curve: pd.Series) -> str:
    return " / ".join(_pct(v) for v in curve) + " at ε = " + " / ".join(f"{e:g}" for e in curve.index)


@_on_thesis_accuracy
def fgsm_bio_slower(rows: pd.DataFrame) -> tuple[str, str]:
    bio, bp = _curve(rows, "bio", "fgsm", THESIS_T), _curve(rows, "bp", "fgsm", THESIS_T)
    shared = bio.index.intersection(bp.index)
    if shared.empty:
        return NA, f"needs FGSM rows of bio and bp at T = {fmt_T(THESIS_T)} and eps > 0"
    ahead = (bio[shared] > bp[shared]) | ((bio[shared] == bp[shared]) & (bio[shared] == 0))
    verdict = AGREE if ahead.all() else DISAGREE
    return verdict, f"Bio {_listing(bio[shared])}; BP {_listing(bp[shared])}"


@_on_thesis_accuracy
def fgsm_both_below_10(rows: pd.DataFrame) -> tuple[str, str]:
    curves = {m: _curve(rows, m, "fgsm", THESIS_T) for m in ("bio", "bp")}
    if any(c.empty for c in curves.values()):
        return NA, f"needs FGSM rows of bio and bp at T = {fmt_T(THESIS_T)}"
    lowest = {m: (c.min(), c.idxmin()) for m, c in curves.items()}
    verdict = AGREE if all(v < ref.FGSM_BOTTOM for v, _ in lowest.values()) else DISAGREE
    return verdict, "; ".join(f"{ref.MODELS[m]} lowest {_pct(v)} (ε = {e:g})" for m, (v, e) in lowest.items())


@_on_thesis_accuracy
def fgsm_larger_T_helps_bio(rows: pd.DataFrame) -> tuple[str, str]:
    base = _curve(rows, "bio", "fgsm", THESIS_T)
    fgsm = rows[(rows["model"] == "bio") & (rows["attack_name"] == "fgsm") & (rows["T"] > THESIS_T * (1 + 1e-6))]
    differences = []
    for T in sorted(set(fgsm["T"])):
        curve = _curve(rows, "bio", "fgsm", T)
        shared = curve.index.intersection(base.index)
        differences += [(T, e, curve[e] - base[e]) for e in shared]
    if not differences:
        return NA, f"needs FGSM rows of bio at T = {fmt_T(THESIS_T)} and at a larger T, at the same eps"
    gains = [d for _, _, d in differences]
    verdict = AGREE if min(gains) >= 0 and max(gains) > 0 else DISAGREE
    return verdict, (f"Bio's accuracy minus its accuracy at T = {fmt_T(THESIS_T)}: {100 * min(gains):+.1f} to "
                     f"{100 * max(gains):+.1f} pt over {len(gains)} (T, ε) pairs")


@_on_thesis_accuracy
def bio_pgd_above_bp_fgsm(rows: pd.DataFrame) -> tuple[str, str]:
    bio, bp = _curve(rows, "bio", "pgd", THESIS_T), _curve(rows, "bp", "fgsm", THESIS_T)
    shared = bio.index.intersection(bp.index)
    if shared.empty:
        return NA, f"needs PGD rows of bio and FGSM rows of bp at T = {fmt_T(THESIS_T)}, same eps"
    above = bio[shared] > bp[shared]
    verdict = AGREE if above.all() else DISAGREE
    where = ", ".join(f"{e:g}" for e in shared[~above.to_numpy()])
    return verdict, (f"Bio PGD {_listing(bio[shared])}; BP FGSM {_listing(bp[shared])}"
                     + (f"; not at ε = {where}" if where else ""))


def zero_grad_falls_faster_bp(rows: pd.DataFrame) -> tuple[str, str]:
    """BP's zero-gradient share below Bio's at every T where Bio's is not yet zero."""
    shares = rows[rows["model"].isin(["bio", "bp"])].dropna(subset=["zero_grad_share"])
    table = shares.groupby(["T", "model"])["zero_grad_share"].mean().unstack("model")
    if not {"bio", "bp"} <= set(table.columns) or len(table.dropna()) < 2:
        return NA, "needs zero-gradient shares of bio and bp at two or more T"
    table = table.dropna()
    masked = table[table["bio"] > 0]
    verdict = AGREE if len(masked) and (masked["bp"] < masked["bio"]).all() else DISAGREE
    listing = "; ".join(f"T = {T:g}: Bio {_pct(r['bio'])}, BP {_pct(r['bp'])}" for T, r in table.iterrows()
                        if r["bio"] > 0 or r["bp"] > 0)
    return verdict, listing or "no zero gradients at any T"


def clean_comparable(rows: pd.DataFrame) -> tuple[str, str]:
    """Clean accuracy of the bare model and its rescaled views only: another defense (one that changes
    predictions) has its own clean accuracy."""
    plain = rows[rows["model"].isin(["bio", "bp"]) & rows["logit_view"].astype(bool)]
    clean = plain.groupby("model")["clean_acc"].mean()
    if not {"bio", "bp"} <= set(clean.index):
        return NA, "needs rows of bio and bp without a defense (or only rescaled)"
    gap = clean["bp"] - clean["bio"]
    thesis_gap = ref.REFERENCE[("test_acc", "bp")].value - ref.REFERENCE[("test_acc", "bio")].value
    near = all(abs(clean[m] - ref.CLEAN_LEVEL) <= LEVEL_SLACK for m in ("bio", "bp"))
    verdict = AGREE if near and gap >= 0 and abs(gap - thesis_gap) <= GAP_SLACK + 1e-9 else DISAGREE
    return verdict, f"Bio {_pct(clean['bio'])}, BP {_pct(clean['bp'])}: BP {100 * gap:+.1f} pt"


CHECKS: dict[str, Callable[[pd.DataFrame], tuple[str, str]]] = {
    "fgsm_bio_slower": fgsm_bio_slower,
    "fgsm_both_below_10": fgsm_both_below_10,
    "fgsm_larger_T_helps_bio": fgsm_larger_T_helps_bio,
    "bio_pgd_above_bp_fgsm": bio_pgd_above_bp_fgsm,
    "zero_grad_falls_faster_bp": zero_grad_falls_faster_bp,
    "clean_comparable": clean_comparable,
}


def check_claims(attacks: pd.DataFrame) -> list[tuple[ref.Claim, str, str]]:
    """(claim, verdict, evidence) for every claim, from ok attack rows (no worst-case rows)."""
    rows = attacks[attacks["dataset"] == "mnist"] if "dataset" in attacks else attacks
    return [(claim, *CHECKS[claim.key](rows)) for claim in ref.CLAIMS]


def claims_section(run):
    from harness_reporters.document import Section, Table, Text

    section = Section("claims", "Thesis claims", short="Claims")
    section.add(Table(["claim", "thesis", "this run", "evidence"],
                      [[c.text, c.source, verdict, evidence] for c, verdict, evidence in check_claims(run.attacks)]))
    section.add(Text("Each qualitative statement of the thesis, checked against this run's rows "
                     "(MNIST, models `bio` and `bp`; plugins/harness_reporters/report_claims.py says how). "
                     "A run smaller than the thesis's (fewer units, epochs or test images) can disagree for "
                     "that reason alone.", "note"))
    return section
