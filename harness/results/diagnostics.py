"""Checks that an evaluation was not fooled by gradient masking, and worst-case accuracy over attacks.

Published "robust" models have been broken many times because their evaluation saw no gradient
(Athalye, Carlini & Wagner 2018; Carlini et al. 2019; Pintor et al. 2022, "Indicators of Attack
Failure"). Each check below reads the grid that was run for one dataset x model x seed x defense
(a *view* of the model) and returns :class:`Finding` s, each naming the rows its evidence concerns:
a convergence gap of PGD at eps 0.1 flags PGD's row at 0.1 (and the worst case there), not FGSM's
rows or other eps; no attack check ever flags an eps = 0 row. A finding has one of two grades:

- ``meaningless``: a masking symptom (zero or non-finite gradients, noise or a gradient-free attack
  beating white-box ones, no success at a huge eps): the attack did not see the model, so its number
  says nothing about robustness;
- ``upper bound``: the attack is working but not done (twice the steps, a single step or a smaller eps
  found more): the true robust accuracy is lower, by at least the amount the reason states.

A check the grid cannot evaluate (e.g. no eps >= 0.5 was run) is listed in ``checks_skipped``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.kit.integrity import TOLERANCE as INTEGRITY  # autograd vs finite differences: > 5 % disagree
from harness.results.rundir import EXAMPLES, RunDir
from harness.results.stats import mcnemar_exact, p_clause
from harness.results.table import robust_among_correct
from harness.suite.load import config_hash

TOLERANCE = 0.01          # accuracy differences below 1 percentage point are noise
ALPHA = 0.01              # a convergence gap counts when the exact McNemar test gives p < ALPHA
CONVERGENCE_GAP = 0.02    # fallback for runs without per-image 2x-steps outcomes: > 2 points
GRADIENT_SHARE = 0.01     # > 1 % of images with a zero or non-finite input gradient
LARGE_EPS = {"linf": 0.5, "l2": 8.0}
LARGE_EPS_ACCURACY = 0.02  # at a large eps an attack that works leaves < 2 % accuracy
GROUP = ["dataset", "model", "seed", "defense"]
WHITE_BOX = ("single-step", "iterative", "minimal")
MEANINGLESS, UPPER_BOUND = "meaningless", "upper bound"
GRADE = {"single_step": UPPER_BOUND, "gradient_free": MEANINGLESS, "large_eps": MEANINGLESS,
         "noise": MEANINGLESS, "monotone": UPPER_BOUND, "converged": UPPER_BOUND, "gradients": MEANINGLESS,
         "integrity": MEANINGLESS}
CHECKS = tuple(GRADE)
# Upper-bound checks whose evidence also concerns a worst case pooled over the flagged row: an attack
# that has not converged, or fails more with a larger eps, can inflate the per-image worst case.
# A single step beating an iterative attack cannot: the single step is pooled into the worst case too.
POOLED_UPPER = ("converged", "monotone")
WORST = "worst-case"
LONGER = "robust_2x"      # per-image outcomes of the 2x-steps rerun, in OUT/examples (first images)


@dataclass(frozen=True)
class Finding:
    """One piece of evidence against the rows ``index`` (labels of the results frame)."""

    check: str
    reason: str
    index: tuple

    @property
    def grade(self) -> str:
        return GRADE[self.check]


def grade_text(grades: str, not_checked: str) -> str:
    """A masking grade for a table cell: the grades found, else "none found", and then the checks
    that could not run on the grid (``checks_skipped``), so "nothing found" and "not looked" differ."""
    text = grades or "none found"
    return f"{text}; not checked: {not_checked}" if not_checked else text


def skipped_union(texts) -> str:
    """The checks skipped by any of several rows (``checks_skipped`` texts), sorted."""
    return ", ".join(sorted({c for text in texts if isinstance(text, str) for c in text.split(", ") if c}))


def pooled_skipped(texts, sound) -> str:
    """The checks a worst case pooled over member attack rows was not graded by, from the members'
    ``checks_skipped`` texts and whether each member is ``sound`` (no meaningless finding). It is
    meaningless only if every member is (one sound attack bounds it, :func:`pooled_checks`), so its
    meaningless-grade checks are those its best-checked sound member skipped (the member with the fewest;
    any member when none is sound); an upper-bound check it inherits from any member (POOLED_UPPER) is
    skipped if any member skipped it. The single-step check does not concern a pool that holds the single
    step itself."""
    members = [({c for c in text.split(", ") if c} if isinstance(text, str) else set(), ok)
               for text, ok in zip(texts, sound)]
    if not members:
        return ""
    graded = {name for name in CHECKS if GRADE[name] == MEANINGLESS}
    candidates = [skipped & graded for skipped, ok in members if ok] or [skipped & graded for skipped, _ in members]
    best = min(candidates, key=lambda skipped: (len(skipped), sorted(skipped)))
    upper = {c for skipped, _ in members for c in skipped if c in POOLED_UPPER}
    return ", ".join(sorted(best | upper))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _points(value: float) -> str:
    return f"{100 * value:.1f} points"


def _attacked(rows: pd.DataFrame, kinds: Iterable[str] | None = None) -> pd.DataFrame:
    chosen = rows[rows["eps"] > 0]
    return chosen if kinds is None else chosen[chosen["attack_kind"].isin(list(kinds))]


def _at(key) -> str:
    return f"{key[0]} eps={key[1]:g}"


def _beaten(reference: pd.DataFrame, targets: pd.DataFrame, check: str, reason) -> list[Finding] | None:
    """Each target row that leaves more than :data:`TOLERANCE` more accuracy than the best reference row
    at the same norm and eps, as a ``check`` finding with ``reason(row, key, best)``; None when no
    (norm, eps) has both."""
    best = reference.groupby(["norm", "eps"])["robust_acc"].min()
    findings, common = [], False
    for key, members in targets.groupby(["norm", "eps"]):
        if key not in best.index:
            continue
        common = True
        for index, row in members.iterrows():
            if row["robust_acc"] - best[key] > TOLERANCE:
                findings.append(Finding(check, reason(row, key, best[key]), (index,)))
    return findings if common else None


def check_single_step(rows, examples=None):
    """An iterative attack left more accuracy than a single step of the same budget: upper bound."""
    return _beaten(_attacked(rows, ["single-step"]), _attacked(rows, ["iterative"]), "single_step",
                   lambda row, key, best: f"{row['attack']} at {_at(key)}: ≥ {_points(row['robust_acc'] - best)} "
                                          f"lower, a single-step attack left {_pct(best)}")


def check_gradient_free(rows, examples=None):
    """A gradient-free attack left less accuracy than a white-box one at the same eps and view: that
    white-box row is meaningless (its gradients misled it). Each white-box row is compared on its
    own, so a strong white-box attack does not clear a weak one beside it."""
    return _beaten(_attacked(rows, ["gradient-free"]), _attacked(rows, WHITE_BOX), "gradient_free",
                   lambda row, key, best: f"a gradient-free attack ({_pct(best)}) beat {row['attack']} "
                                          f"({_pct(row['robust_acc'])}) at {_at(key)}")


def check_noise(rows, examples=None):
    """Random noise of the same budget beat an attack: that attack's row is meaningless."""
    attacks = _attacked(rows)
    return _beaten(_attacked(rows, ["baseline"]), attacks[attacks["attack_kind"] != "baseline"], "noise",
                   lambda row, key, best: f"random noise ({_pct(best)}) beat attack {row['attack']} "
                                          f"({_pct(row['robust_acc'])}) at {_at(key)}")


def check_monotone(rows, examples=None):
    """An attack left more accuracy at a larger eps than at a smaller one: that row is an upper bound
    (every perturbation allowed at the smaller eps is allowed at the larger)."""
    attacks = _attacked(rows)
    if attacks.empty:
        return None
    findings = []
    for _, runs in attacks.groupby(["attack", "norm"]):
        runs = runs.sort_values("eps")
        for i in range(1, len(runs)):
            row, lowest = runs.iloc[i], runs["robust_acc"].iloc[:i].min()
            if row["robust_acc"] > lowest + TOLERANCE:
                findings.append(Finding("monotone", f"{row['attack']} at {_at((row['norm'], row['eps']))}: "
                                        f"≥ {_points(row['robust_acc'] - lowest)} lower, a smaller eps left "
                                        f"{_pct(lowest)}", (runs.index[i],)))
    return findings


def check_large_eps(rows, examples=None):
    """At a large eps every attack left more than a few percent: they are not reaching images that are
    certainly adversarial, so their rows at that eps are meaningless."""
    attacks = rows[(rows["eps"] >= rows["norm"].map(LARGE_EPS)) & (rows["attack_kind"] != "baseline")]
    if attacks.empty:
        return None
    findings = []
    for key, members in attacks.groupby(["norm", "eps"]):
        best = members["robust_acc"].min()
        if best > LARGE_EPS_ACCURACY:
            findings.append(Finding("large_eps", f"at {_at(key)} the best attack still leaves {_pct(best)}",
                                    tuple(members.index)))
    return findings


def outcomes_file(examples: RunDir | Path, digest: str) -> Path:
    """One cell's per-image outcomes (:meth:`harness.results.rundir.RunDir.cell_examples`); ``examples`` is
    the run directory, or its ``examples`` folder."""
    if not isinstance(examples, RunDir):
        if Path(examples).name != EXAMPLES:
            raise ValueError(f"{examples}: expected a run directory's '{EXAMPLES}' folder")
        examples = RunDir(Path(examples).parent)
    return examples.cell_examples(digest)


def convergence_test(row, examples: RunDir | Path | None) -> tuple[float, int, float] | None:
    """(gap, images, McNemar p) of a row's attack against itself with twice the steps, from the
    per-image outcomes of both on the convergence subset; None when those were not stored."""
    if examples is None:
        return None
    path = outcomes_file(examples, row["config_hash"])
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    stored = load_file(str(path))
    if LONGER not in stored:
        return None
    longer = stored[LONGER].bool()
    normal = stored["robust"].bool()[: len(longer)]
    missed = int((normal & ~longer).sum())  # robust with the attack's steps, broken with twice as many
    found = int((~normal & longer).sum())   # the reverse: a different random start, not convergence
    gap = (missed - found) / max(len(longer), 1)
    return gap, len(longer), (mcnemar_exact(missed, found) if missed > found else 1.0)


def check_converged(rows, examples=None):
    """Twice the steps found more adversarial examples, more than sampling noise explains (an exact
    McNemar test on the convergence subset): that attack's row at that eps is an upper bound."""
    tried = rows[rows["converged_gap"].notna() & (rows["eps"] > 0)]
    if tried.empty:
        return None
    findings = []
    for index, row in tried.iterrows():
        test = convergence_test(row, examples)
        where = f"{row['attack']} at {_at((row['norm'], row['eps']))}"
        if test is None:  # a run from before per-image 2x outcomes were stored: the fixed threshold
            if row["converged_gap"] > CONVERGENCE_GAP:
                findings.append(Finding("converged", f"{where}: ≥ {_points(row['converged_gap'])} lower with "
                                        f"2× steps", (index,)))
            continue
        gap, images, p = test
        if p < ALPHA:
            findings.append(Finding("converged", f"{where}: ≥ {_points(gap)} lower with 2× steps "
                                    f"(McNemar {p_clause(p)}, {images} images)", (index,)))
    return findings


def check_gradients(rows, examples=None):
    """Many images have an exactly zero or non-finite input gradient in this view: the gradient-based
    attack rows of the view (eps > 0) are meaningless."""
    if rows.empty:
        return None
    share = float((rows["zero_grad_share"].fillna(0) + rows["nonfinite_grad_share"].fillna(0)).max())
    if share <= GRADIENT_SHARE:
        return []
    targets = _attacked(rows, WHITE_BOX)
    reason = f"{_pct(share)} of input gradients are exactly zero or not finite"
    return [Finding("gradients", reason, tuple(targets.index))] if len(targets) else []


def check_integrity(rows, examples=None):
    """This view's backward pass is not the gradient of its forward function (autograd disagrees with
    finite differences, harness/kit/integrity.py): its gradient-based attack rows are meaningless. Not
    checked when no row of the view measured it (older runs, a view with no usable direction)."""
    measured = (pd.to_numeric(rows["grad_integrity"], errors="coerce").dropna() if "grad_integrity" in rows
                else pd.Series(dtype=float))
    if rows.empty or measured.empty:
        return None
    disagreement = float(measured.max())
    if disagreement <= INTEGRITY:
        return []
    targets = _attacked(rows, WHITE_BOX)
    reason = (f"autograd disagrees with finite differences of the forward function by a median "
              f"{_pct(disagreement)} (a backward that is not the gradient, e.g. feedback alignment)")
    return [Finding("integrity", reason, tuple(targets.index))] if len(targets) else []


def evaluate(rows: pd.DataFrame, examples: RunDir | Path | None = None) -> dict[str, list[Finding] | None]:
    """Every check on one view's ok rows: name -> its findings, or None if the grid cannot evaluate it.
    ``examples`` (the run directory, or OUT/examples) holds the per-image outcomes the convergence
    test reads."""
    return {name: globals()[f"check_{name}"](rows, examples) for name in CHECKS}


def annotate(frame: pd.DataFrame, examples: RunDir | Path) -> pd.DataFrame:
    """The table with its check columns filled in and worst-case rows appended (old ones replaced);
    ``examples``: the run directory, or its ``examples`` folder."""
    frame = frame[frame["attack"] != WORST].copy()
    ok = frame["status"] == "ok"
    found: dict = {}  # row label -> {check: [reasons]}
    for _, rows in frame[ok].groupby(GROUP):
        results = evaluate(rows, examples)
        skipped = ", ".join(name for name, findings in results.items() if findings is None)
        frame.loc[rows.index, "checks_skipped"] = skipped
        for findings in results.values():
            for finding in findings or []:
                for index in finding.index:
                    found.setdefault(index, {}).setdefault(finding.check, []).append(finding.reason)
    for column, value in flag_columns({}).items():
        frame[column] = pd.Series([value] * len(frame), index=frame.index, dtype=object)
    for index, checks in found.items():
        for column, value in flag_columns(checks).items():
            frame.at[index, column] = value
    worst = worst_case_rows(frame[ok], examples, found)
    frame = pd.concat([frame, worst], ignore_index=True) if len(worst) else frame.reset_index(drop=True)
    return frame.astype({f"chk_{name}": bool for name in CHECKS} | {"unreliable": bool})


def flag_columns(checks: dict[str, list[str]]) -> dict[str, object]:
    """A row's flag columns from its reasons by check (see :class:`harness.results.table.Row`)."""
    by_grade = {grade: sorted({r for name, reasons in checks.items() if GRADE[name] == grade for r in reasons})
                for grade in (MEANINGLESS, UPPER_BOUND)}
    columns: dict[str, object] = {f"chk_{name}": bool(checks.get(name)) for name in CHECKS}
    columns.update(meaningless="; ".join(by_grade[MEANINGLESS]), upper_bound="; ".join(by_grade[UPPER_BOUND]),
                   unreliable=bool(by_grade[MEANINGLESS] or by_grade[UPPER_BOUND]),
                   reasons="; ".join(by_grade[MEANINGLESS] + by_grade[UPPER_BOUND]))
    return columns


def meaningless(checks: dict[str, list[str]]) -> bool:
    """Whether a row's reasons by check hold a meaningless-grade finding."""
    return any(GRADE[name] == MEANINGLESS and reasons for name, reasons in checks.items())


def pooled_checks(members: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """Check name -> reasons that flag a worst case pooled over these member rows (one attack through
    one view each, all at the worst case's eps). The worst case is meaningless only if every member
    is (one sound attack bounds it); it is an upper bound if any member's attack had not converged or
    rose with eps (see POOLED_UPPER)."""
    flagged: dict[str, list[str]] = {name: [] for name in CHECKS}
    blind = bool(members) and all(meaningless(m) for m in members)
    for member in members:
        for name, reasons in member.items():
            if (GRADE[name] == MEANINGLESS and blind) or name in POOLED_UPPER:
                flagged[name] = sorted(set(flagged[name]) | set(reasons))
    return flagged


RESCALED = "rescaled"  # the pool of a model's logit views (rows with ``logit_view``)


def pools(rows: pd.DataFrame) -> list[str]:
    """Each row's worst-case pool: the views of a model's logits (``logit_view``: rescalers, the bare
    model) share one, every other defense is its own."""
    return [RESCALED if bool(view) else defense for defense, view in zip(rows["defense"], rows["logit_view"])]


def pooled_members(ok: pd.DataFrame) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """Per dataset x model x seed x eps x norm x pool (eps > 0): the attack rows a worst case pools."""
    attacked = ok[(ok["eps"] > 0) & (ok["attack"] != WORST)].copy()
    attacked["pool"] = pools(attacked)
    yield from attacked.groupby(["dataset", "model", "seed", "eps", "norm", "pool"])


def pooled_outcome(members: pd.DataFrame, examples: RunDir | Path, with_correct: bool = False):
    """Per image: robust only if every member attack failed on it (None: different test sets);
    ``with_correct``: (clean-correct, robust), clean-correct from the first member (every member
    pooled here saw the same model, images and predictions)."""
    import torch
    from safetensors.torch import load_file

    stored = [load_file(str(outcomes_file(examples, h))) for h in members["config_hash"]]
    outcomes = [s["robust"] for s in stored]
    if len({len(o) for o in outcomes}) != 1:
        return None
    robust = torch.stack([o.bool() for o in outcomes]).all(0)
    return (stored[0]["correct"].bool(), robust) if with_correct else robust


def worst_case_rows(ok: pd.DataFrame, examples: RunDir | Path,
                    found: dict[object, dict[str, list[str]]]) -> pd.DataFrame:
    """Per dataset x model x seed x eps x norm: an image counts as robust only if every attack run
    on it failed (AutoAttack's rule). Defenses that never change a prediction (rescalers, and the
    bare model) are pooled: an adversarial example found through any of them is one for the model.
    ``found`` holds each row's reasons by check; pooled rows combine them by :func:`pooled_checks`
    (random-noise baselines bound nothing and are left out of that)."""
    rows = []
    for (_, _, _, _, _, pool), members in pooled_members(ok):
        pooled = pooled_outcome(members, examples, with_correct=True)
        if pooled is None:
            continue  # cells over different test sets cannot be pooled
        correct, robust = pooled
        first = members.iloc[0].drop("pool").to_dict()
        defenses = sorted(set(members["defense"]))
        attacks = members[members["attack_kind"] != "baseline"]
        flagged = pooled_checks([found.get(index, {}) for index in attacks.index])
        first.update(
            defense="+".join(defenses), defense_name="pooled" if pool == RESCALED else first["defense_name"],
            T=float("nan"), attack=WORST, attack_name=WORST, backend="", attack_kind=WORST,
            attack_params=json.dumps(sorted(set(members["attack"]))), robust_acc=float(robust.float().mean()),
            robust_acc_cc=robust_among_correct(correct, robust),
            zero_grad_share=float("nan"), nonfinite_grad_share=float("nan"), converged_gap=float("nan"),
            **({"grad_integrity": pd.to_numeric(members["grad_integrity"], errors="coerce").max()}
               if "grad_integrity" in members else {}),
            seconds=float(members["seconds"].sum()), config_hash=config_hash(sorted(members["config_hash"])),
            checks_skipped=pooled_skipped(attacks["checks_skipped"],
                                          [not meaningless(found.get(index, {})) for index in attacks.index]),
            **flag_columns({name: reasons for name, reasons in flagged.items() if reasons}))
        rows.append(first)
    return pd.DataFrame(rows, columns=ok.columns)
