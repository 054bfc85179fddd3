"""Checks that an evaluation was not fooled by gradient masking, and worst-case accuracy over attacks.

Published "robust" models have been broken many times because their evaluation saw no gradient
(Athalye, Carlini & Wagner 2018; Carlini et al. 2019; Pintor et al. 2022, "Indicators of Attack
Failure"). Each check below reads the grid that was run for one dataset x model x seed x defense and
fires on one of their warning signs; a row whose group fired any check is ``unreliable``.
A check the grid cannot evaluate (e.g. no eps >= 0.5 was run) is listed in ``checks_skipped``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from harness.suite import config_hash

TOLERANCE = 0.01          # accuracy differences below 1 percentage point are noise
CONVERGENCE_GAP = 0.02    # twice the iterations finding > 2 points more is "not converged"
GRADIENT_SHARE = 0.01     # > 1 % of images with a zero or non-finite input gradient
LARGE_EPS = {"linf": 0.5, "l2": 8.0}
LARGE_EPS_ACCURACY = 0.02  # at a large eps an attack that works leaves < 2 % accuracy
GROUP = ["dataset", "model", "seed", "defense"]
WHITE_BOX = ("single-step", "iterative", "minimal")
CHECKS = ("single_step", "gradient_free", "large_eps", "noise", "monotone", "converged", "gradients")
# Checks for a blind attacker, which concern one rescaler's view of a model: a pooled worst case is
# blind only if every view pooled into it is. The others (an unconverged attack, accuracy rising with
# eps) can inflate a pooled number through any one view, so any view that fires them flags it.
VIEW_CHECKS = ("single_step", "gradient_free", "large_eps", "noise", "gradients")
WORST = "worst-case"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _by_eps(rows: pd.DataFrame, kinds: Iterable[str]) -> pd.Series:
    """Lowest robust accuracy per (norm, eps) among attacks of the given kinds, eps > 0."""
    chosen = rows[rows["attack_kind"].isin(list(kinds)) & (rows["eps"] > 0)]
    return chosen.groupby(["norm", "eps"])["robust_acc"].min()


def _beats(winner: pd.Series, loser: pd.Series, what: str, names: pd.Series | None = None) -> tuple[bool | None, str]:
    """Does ``winner`` (lower robust accuracy) undercut ``loser`` by more than the tolerance at some
    (norm, eps) both ran? None when they share no eps. ``names`` labels the loser in the reason."""
    common = winner.index.intersection(loser.index)
    if common.empty:
        return None, ""
    gaps = loser[common] - winner[common]
    worst = gaps.idxmax()
    if gaps[worst] > TOLERANCE:
        name = names[worst] if names is not None else ""
        return True, what.format(w=_pct(winner[worst]), l=_pct(loser[worst]),
                                 eps=f"{worst[0]} eps={worst[1]:g}", name=name)
    return False, ""


def check_single_step(rows):
    return _beats(_by_eps(rows, ["single-step"]), _by_eps(rows, ["iterative"]),
                  "a single-step attack ({w}) beat the iterative ones ({l}) at {eps}")


def check_gradient_free(rows):
    return _beats(_by_eps(rows, ["gradient-free"]), _by_eps(rows, WHITE_BOX),
                  "a gradient-free attack ({w}) beat every white-box one ({l}) at {eps}")


def check_noise(rows):
    attacks = rows[(rows["attack_kind"] != "baseline") & (rows["eps"] > 0)]
    if attacks.empty:
        return None, ""
    weakest = attacks.loc[attacks.groupby(["norm", "eps"])["robust_acc"].idxmax()].set_index(["norm", "eps"])
    return _beats(_by_eps(rows, ["baseline"]), weakest["robust_acc"],
                  "random noise ({w}) beat attack {name} ({l}) at {eps}", names=weakest["attack"])


def check_monotone(rows):
    attacks = rows[rows["eps"] > 0]
    if attacks.empty:
        return None, ""
    for key, runs in attacks.groupby(["attack", "norm"]):
        acc = runs.sort_values("eps")["robust_acc"].tolist()
        eps = runs.sort_values("eps")["eps"].tolist()
        for i in range(1, len(acc)):
            if acc[i] > min(acc[:i]) + TOLERANCE:
                return True, f"{key[0]}: robust accuracy rose to {_pct(acc[i])} at eps={eps[i]:g}"
    return False, ""


def check_large_eps(rows):
    large = rows[(rows["eps"] >= rows["norm"].map(LARGE_EPS)) & (rows["attack_kind"] != "baseline")]
    if large.empty:
        return None, ""
    top = large[large["eps"] == large["eps"].max()]
    best = top["robust_acc"].min()
    if best > LARGE_EPS_ACCURACY:
        return True, f"at eps={top['eps'].iloc[0]:g} the best attack still leaves {_pct(best)}"
    return False, ""


def check_converged(rows):
    gaps = rows["converged_gap"].dropna()
    if gaps.empty:
        return None, ""
    worst = rows.loc[gaps.idxmax()]
    if gaps.max() > CONVERGENCE_GAP:
        return True, (f"{worst['attack']} at eps={worst['eps']:g}: twice the iterations found "
                      f"{_pct(gaps.max())} more")
    return False, ""


def check_gradients(rows):
    share = float((rows["zero_grad_share"] + rows["nonfinite_grad_share"].fillna(0)).max())
    if share > GRADIENT_SHARE:
        return True, f"{_pct(share)} of input gradients are exactly zero or not finite"
    return False, ""


def evaluate(rows: pd.DataFrame) -> dict[str, tuple[bool | None, str]]:
    """Every check on one group's ok rows: name -> (fired, or None if not evaluable; reason)."""
    functions: dict[str, Callable] = {name: globals()[f"check_{name}"] for name in CHECKS}
    return {name: function(rows) for name, function in functions.items()}


def annotate(frame: pd.DataFrame, examples: Path, rescalers: set[str]) -> pd.DataFrame:
    """The table with its check columns filled in and worst-case rows appended (old ones replaced)."""
    frame = frame[frame["attack"] != WORST].copy()
    ok = frame["status"] == "ok"
    checked: dict[tuple, dict[str, tuple[bool | None, str]]] = {}
    for key, rows in frame[ok].groupby(GROUP):
        results = checked[key] = evaluate(rows)
        fired = [reason for fired_, reason in results.values() if fired_]
        skipped = [name for name, (fired_, _) in results.items() if fired_ is None]
        for name, (fired_, _) in results.items():
            frame.loc[rows.index, f"chk_{name}"] = bool(fired_)
        frame.loc[rows.index, "unreliable"] = bool(fired)
        frame.loc[rows.index, "reasons"] = "; ".join(fired)
        frame.loc[rows.index, "checks_skipped"] = ", ".join(skipped)
    worst = worst_case_rows(frame[ok], examples, rescalers, checked)
    return pd.concat([frame, worst], ignore_index=True) if len(worst) else frame.reset_index(drop=True)


def pooled_checks(views: list[dict[str, tuple[bool | None, str]]]) -> dict[str, list[str]]:
    """Check name -> reasons that flag a worst case pooled over these views (see VIEW_CHECKS)."""
    flagged = {}
    for name in CHECKS:
        states = [view[name] for view in views]
        fired = [reason for hit, reason in states if hit]
        blind_everywhere = all(hit for hit, _ in states)
        flagged[name] = sorted(set(fired)) if name not in VIEW_CHECKS or blind_everywhere else []
    return flagged


def worst_case_rows(ok: pd.DataFrame, examples: Path, rescalers: set[str],
                    checked: dict[tuple, dict[str, tuple[bool | None, str]]]) -> pd.DataFrame:
    """Per dataset x model x seed x eps x norm: an image counts as robust only if every attack run
    on it failed (AutoAttack's rule). Defenses that never change a prediction (rescalers, and the
    bare model) are pooled: an adversarial example found through any of them is one for the model.
    ``checked`` holds each GROUP's check results; pooled rows combine them by :func:`pooled_checks`."""
    import torch
    from safetensors.torch import load_file

    attacked = ok[ok["eps"] > 0].copy()
    attacked["pool"] = [d if name not in rescalers else "rescaled"
                        for d, name in zip(attacked["defense"], attacked["defense_name"])]
    rows = []
    for (dataset, model, seed, eps, norm, pool), members in attacked.groupby(
            ["dataset", "model", "seed", "eps", "norm", "pool"]):
        outcomes = [load_file(str(examples / f"{h}.safetensors")) for h in members["config_hash"]]
        if len({len(o["robust"]) for o in outcomes}) != 1:
            continue  # cells over different test sets cannot be pooled
        robust = torch.stack([o["robust"].bool() for o in outcomes]).all(0)
        first = members.iloc[0].to_dict()
        defenses = sorted(set(members["defense"]))
        flagged = pooled_checks([checked[(dataset, model, seed, d)] for d in defenses])
        first.update(
            defense="+".join(defenses), defense_name="pooled" if pool == "rescaled" else first["defense_name"],
            T=float("nan"), attack=WORST, attack_name=WORST, backend="", attack_kind=WORST,
            attack_params=json.dumps(sorted(set(members["attack"]))), robust_acc=float(robust.float().mean()),
            zero_grad_share=float("nan"), nonfinite_grad_share=float("nan"), converged_gap=float("nan"),
            seconds=float(members["seconds"].sum()), config_hash=config_hash(sorted(members["config_hash"])),
            unreliable=any(flagged.values()),
            reasons="; ".join(sorted({r for reasons in flagged.values() for r in reasons})),
            checks_skipped=", ".join(sorted({c for s in members["checks_skipped"] for c in s.split(", ") if c})))
        for name in CHECKS:
            first[f"chk_{name}"] = bool(flagged[name])
        rows.append(first)
    return pd.DataFrame(rows, columns=ok.columns)
