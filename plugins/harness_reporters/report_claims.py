"""The report's "Thesis claims" section: each qualitative claim of the thesis
(:data:`harness_reporters.reference.CLAIMS`) checked against this run's rows and marked agree,
disagree or n/a (the run lacks the rows the claim needs), with the numbers that decided it.

Only MNIST rows of the models keyed ``bio`` and ``bp`` count, clean accuracies are the rows' own (the
test images of this run), and "at T" means the rows of a logit-scale view with that temperature.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from harness_reporters import reference as ref

AGREE, DISAGREE, NA = "agree", "disagree", "n/a"
THESIS_T = 1e5
# "comparable": both within this many points of the thesis's ~98 %, BP ahead by at most MAX_GAP
NEAR_98, MAX_GAP = 1.5, 1.0


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _curve(rows: pd.DataFrame, model: str, attack: str, T: float) -> pd.Series:
    """Robust accuracy against eps > 0 (mean over seeds) of one model under one attack plugin at T."""
    picked = rows[(rows["model"] == model) & (rows["attack_name"] == attack) & (rows["norm"] == "linf")
                  & ((rows["T"] / T - 1).abs() < 1e-6) & (rows["eps"] > 0)]
    return picked.groupby("eps")["robust_acc"].mean().sort_index()


def _listing(curve: pd.Series) -> str:
    return " / ".join(_pct(v) for v in curve) + " at ε = " + " / ".join(f"{e:g}" for e in curve.index)


def fgsm_bio_slower(rows: pd.DataFrame) -> tuple[str, str]:
    bio, bp = _curve(rows, "bio", "fgsm", THESIS_T), _curve(rows, "bp", "fgsm", THESIS_T)
    shared = bio.index.intersection(bp.index)
    if shared.empty:
        return NA, "needs FGSM rows of bio and bp at T = 1e5 and eps > 0"
    ahead = (bio[shared] > bp[shared]) | ((bio[shared] == bp[shared]) & (bio[shared] == 0))
    verdict = AGREE if ahead.all() else DISAGREE
    return verdict, f"Bio {_listing(bio[shared])}; BP {_listing(bp[shared])}"


def fgsm_both_below_10(rows: pd.DataFrame) -> tuple[str, str]:
    curves = {m: _curve(rows, m, "fgsm", THESIS_T) for m in ("bio", "bp")}
    if any(c.empty for c in curves.values()):
        return NA, "needs FGSM rows of bio and bp at T = 1e5"
    lowest = {m: (c.min(), c.idxmin()) for m, c in curves.items()}
    verdict = AGREE if all(v < 0.10 for v, _ in lowest.values()) else DISAGREE
    return verdict, "; ".join(f"{ref.MODELS[m]} lowest {_pct(v)} (ε = {e:g})" for m, (v, e) in lowest.items())


def fgsm_larger_T_helps_bio(rows: pd.DataFrame) -> tuple[str, str]:
    base = _curve(rows, "bio", "fgsm", THESIS_T)
    fgsm = rows[(rows["model"] == "bio") & (rows["attack_name"] == "fgsm") & (rows["T"] > THESIS_T * (1 + 1e-6))]
    differences = []
    for T in sorted(set(fgsm["T"])):
        curve = _curve(rows, "bio", "fgsm", T)
        shared = curve.index.intersection(base.index)
        differences += [(T, e, curve[e] - base[e]) for e in shared]
    if not differences:
        return NA, "needs FGSM rows of bio at T = 1e5 and at a larger T, at the same eps"
    gains = [d for _, _, d in differences]
    verdict = AGREE if min(gains) >= 0 and max(gains) > 0 else DISAGREE
    return verdict, (f"Bio's accuracy minus its accuracy at T = 1e5: {100 * min(gains):+.1f} to "
                     f"{100 * max(gains):+.1f} pt over {len(gains)} (T, ε) pairs")


def bio_pgd_above_bp_fgsm(rows: pd.DataFrame) -> tuple[str, str]:
    bio, bp = _curve(rows, "bio", "pgd", THESIS_T), _curve(rows, "bp", "fgsm", THESIS_T)
    shared = bio.index.intersection(bp.index)
    if shared.empty:
        return NA, "needs PGD rows of bio and FGSM rows of bp at T = 1e5, same eps"
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
    clean = rows[rows["model"].isin(["bio", "bp"])].groupby("model")["clean_acc"].mean()
    if not {"bio", "bp"} <= set(clean.index):
        return NA, "needs rows of bio and bp"
    gap = 100 * (clean["bp"] - clean["bio"])
    near = all(abs(100 * clean[m] - 98) <= NEAR_98 for m in ("bio", "bp"))
    verdict = AGREE if near and 0 <= gap <= MAX_GAP else DISAGREE
    return verdict, f"Bio {_pct(clean['bio'])}, BP {_pct(clean['bp'])}: BP {gap:+.1f} pt"


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
