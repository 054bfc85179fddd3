"""The findings page's "The thesis's claims" section: each qualitative claim of the thesis
(:data:`harness_reporters.reference.CLAIMS`) judged twice, with the checks of
:mod:`harness_reporters.report_claims`:

- under the thesis's own attacks (FGSM and PGD-40 at T = 1e5), on the thesis-protocol run;
- under the strongest attacks, on the headline run: where a claim names FGSM or PGD as the attack
  *on the net it praises*, that attack is replaced by the per-image worst case over every attack and
  logit view (``worst-case`` rows, counted among the clean-correct images as the thesis counts). "Bio
  under PGD stays above BP under FGSM" becomes "Bio's worst case stays above BP under FGSM".

A comparative claim whose opposite holds at every ε under the strong attacks is "reversed"; one that
holds under the thesis's attacks and merely stops holding under the strong ones "does not survive". Claims that are not about
attack strength (clean accuracy, gradients against T, larger T) are judged on the first run only.
Then the thesis's two numbers, 57.8 % and 24.2 %, against the measured PGD-40 figures and their
Wilson intervals over the clean-correct images.
"""

from __future__ import annotations

import pandas as pd

from harness.results.diagnostics import WORST
from harness.results.stats import proportion_interval
from harness_reporters import reference as ref
from harness_reporters import report_claims as rc
from harness_reporters.document import Section, Table, Text
from harness_reporters.report_format import pct, with_interval
from harness_reporters.report_run import load_run

ABOUT_ATTACKS = ("fgsm_bio_slower", "fgsm_both_below_10", "bio_pgd_above_bp_fgsm")
REVERSED, GONE, HOLDS = "reversed", "does not survive", "holds"


def _as_attack(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """Worst-case rows dressed as rows of attack ``name`` at the thesis's T, for the claim checks."""
    return rows.assign(attack_name=name, attack=name, T=rc.THESIS_T, norm="linf")


def strong_frames(run) -> dict[str, pd.DataFrame]:
    """Per claim about attacks, the headline rows with the praised net's attack replaced by its worst case."""
    ok = run.ok[run.ok["model"].isin(["bio", "bp"])]
    worst = ok[ok["attack"] == WORST]
    if worst.empty:
        return {}
    fgsm = ok[(ok["attack_name"] == "fgsm") & ((ok["T"] / rc.THESIS_T - 1).abs() < 1e-6)]
    both = _as_attack(worst, "fgsm")
    return {"fgsm_bio_slower": both, "fgsm_both_below_10": both,
            "bio_pgd_above_bp_fgsm": pd.concat([_as_attack(worst[worst["model"] == "bio"], "pgd"),
                                                fgsm[fgsm["model"] == "bp"]])}


def _reversed(key: str, rows: pd.DataFrame) -> bool:
    """Whether the opposite of the comparative claim ``key`` holds at every shared eps."""
    acc, _ = rc.thesis_accuracy(rows)
    rows = rows.assign(acc=acc)
    attacks = {"fgsm_bio_slower": ("fgsm", "fgsm"), "bio_pgd_above_bp_fgsm": ("pgd", "fgsm")}
    if key not in attacks:
        return False
    bio = rc._curve(rows, "bio", attacks[key][0], rc.THESIS_T)
    bp = rc._curve(rows, "bp", attacks[key][1], rc.THESIS_T)
    shared = bio.index.intersection(bp.index)
    return not shared.empty and bool((bio[shared] < bp[shared]).all())


def claims_rows(weak_rows: pd.DataFrame | None, strong: dict[str, pd.DataFrame]) -> list[list[str]]:
    weak = {c.key: (v, e) for c, v, e in rc.check_claims(weak_rows)} if weak_rows is not None else {}
    rows = []
    for claim in ref.CLAIMS:
        first = weak.get(claim.key, (rc.NA, "no thesis-protocol run"))
        if claim.key in ABOUT_ATTACKS and claim.key in strong:
            frame = strong[claim.key]
            verdict, evidence = rc.CHECKS[claim.key](frame[frame["dataset"] == "mnist"])
            if verdict == rc.AGREE:
                overall = HOLDS if first[0] == rc.AGREE else "holds under the strong attacks only"
            elif _reversed(claim.key, frame):
                overall = REVERSED
            else:
                overall = GONE if first[0] == rc.AGREE else "fails under both"
            second = (verdict, evidence)
        else:
            second = ("—", "not about attack strength" if claim.key not in ABOUT_ATTACKS else "no worst-case rows")
            overall = first[0]
        rows.append([claim.text, claim.source, f"**{first[0]}**: {first[1]}", f"**{second[0]}**: {second[1]}",
                     overall])
    return rows


def numbers_text(spec, thesis_run) -> str:
    """57.8 % and 24.2 % against the thesis-protocol run's PGD-40 (clean-correct images, Wilson)."""
    ok = thesis_run.ok
    pgd = ok[(ok["attack_name"] == "pgd") & ((ok["T"] / ref.PGD_T - 1).abs() < 1e-6)
             & (ok["eps"].sub(ref.PGD_EPS).abs() < 1e-9) & ok["attack_params"].str.contains(f'"steps": {ref.PGD_STEPS}')]
    parts = []
    for model in (spec.a, spec.b):
        claimed = ref.reference("pgd40_eps0.15", model)
        rows = pgd[pgd["model"] == model]
        if claimed is None or rows.empty or rows["robust_acc_cc"].isna().all():
            continue
        row = rows.iloc[0]
        correct = round(row["clean_acc"] * row["n"])
        low, high = proportion_interval(round(row["robust_acc_cc"] * correct), correct)
        inside = low <= claimed.value <= high
        parts.append(f"{model}: thesis {pct(claimed.value)} %, measured {with_interval(row['robust_acc_cc'], low, high)} % "
                     f"of {correct} clean-correct images — "
                     + ("inside the interval" if inside else
                        f"outside it, {'above' if claimed.value > high else 'below'} the measured range"))
    if not parts:
        return ""
    return (f"The thesis's numbers, PGD-40 at ε = {ref.PGD_EPS:g}, T = 1e5 (§3.2), against the same attack "
            f"under this protocol (`{thesis_run.directory.name}`, one seed; the interval covers the images "
            "only): " + "; ".join(parts) + ". Neither figure is a measure of robustness: the strong attacks "
            "leave both nets far lower (above).")


def claims_section(spec, head) -> Section | None:
    if spec.thesis is None:
        return None
    thesis_run = load_run(spec.thesis.directory)
    section = Section("claims", "The thesis's claims, under its attacks and under the strongest",
                      short="Thesis claims")
    section.add(Table(["claim", "thesis", "FGSM / PGD-40 (thesis protocol run)", "strongest attacks (headline run)",
                       "verdict"],
                      claims_rows(thesis_run.attacks, strong_frames(head.run)),
                      caption="each qualitative claim of the thesis; robust accuracy among the clean-correct "
                              "images, as the thesis counts; in the strong column the praised net's attack is "
                              "its per-image worst case over every attack and logit view"))
    section.add(Text(f"Runs: `{thesis_run.directory.name}` (the thesis's protocol and attacks, "
                     f"{int(thesis_run.ok['n'].max())} images) and `{head.run.directory.name}` (the strong attacks, "
                     f"{int(head.run.ok['n'].max())} images). \"reversed\": the opposite holds at every ε under the "
                     f"strong attacks; \"does not survive\": it stops holding at some ε. How each claim is checked: "
                     f"plugins/harness_reporters/report_claims.py; how the strong column substitutes: "
                     f"plugins/harness_reporters/findings_claims.py.", "note"))
    numbers = numbers_text(spec, thesis_run)
    if numbers:
        section.add(Text(numbers))
    return section
