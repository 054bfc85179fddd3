"""The report's "thesis vs this run" table: every number in :mod:`harness_reporters.reference` next
to this run's, with how the run measured it."""

from __future__ import annotations

import json
import math

import pandas as pd

from harness_reporters import reference as ref
from harness_reporters.document import Section, Table, Text
from harness_reporters.report_claims import ALL_IMAGES, thesis_accuracy
from harness_reporters.report_compare import comparison_blocks
from harness_reporters.report_figures import unmasking_T, zero_grad_points
from harness_reporters.report_format import fmt_T, last_train_acc, thesis_name
from harness_reporters.report_run import Run


def thesis_rows(run: Run) -> list[list[str]]:
    """One line per number in harness_reporters.reference: thesis, this run, difference, how it was measured."""
    rows = []
    for (quantity, key), reference in ref.REFERENCE.items():
        value, how = our_value(run, quantity, key)
        thesis = fmt_T(reference.value) if quantity == "unmasking_T" else f"{100 * reference.value:.1f} %"
        thesis = (f"{reference.relation} " if reference.relation != "=" else "") + thesis
        denominator = DENOMINATORS[reference.denominator]
        if value is None:
            rows.append([ref.QUANTITIES[quantity], thesis_name(key), thesis, denominator, "n/a in this run", "–", how])
            continue
        if quantity == "unmasking_T":
            number, relation = value
            ours = (f"{relation} " if relation != "=" else "") + fmt_T(number)
            difference = t_difference(number, relation, reference)
        else:
            ours = f"{100 * value:.1f} %"
            difference = f"{100 * (value - reference.value):+.1f} pt"
        rows.append([ref.QUANTITIES[quantity], thesis_name(key), thesis, denominator, ours, difference, how])
    return rows


def t_difference(number: float, relation: str, reference: ref.Reference) -> str:
    """This run's un-masking T (exactly ``number`` on its grid, at most it, or above it: relation "=",
    "≤", ">") against the thesis's (a value, or an upper bound: reference.relation "=" or "≤"), in
    powers of ten."""
    decades = math.log10(number / reference.value)
    if abs(decades) < 0.05:
        decades = 0.0
    span = f"{decades:+.1f} decades" if decades else "same power of ten"
    if relation == ">" and decades < 0:
        return "undecided: the run's largest T is below the thesis's"
    if relation == "≤" and decades > 0:
        return "undecided: the run's smallest T is above the thesis's"
    if reference.relation == "≤":  # the thesis's value is a bound
        if relation == ">" or decades > 0:
            return "above the thesis's bound" + (f" ({span})" if relation == "=" else "")
        return "within the thesis's bound"
    if relation == "=":
        return span
    if relation == "≤":
        return f"≤ {span}" if decades else "same power of ten or lower"
    return f"> {span}" if decades else "above the thesis's"


# Reference.denominator -> what the table says; both the thesis's figure and this run's use it
DENOMINATORS = {"all": "all images", "clean-correct": "clean-correct images"}


def _mnist(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["dataset"] == "mnist"]


def our_value(run: Run, quantity: str, key: str):
    """(value, how) or (None, why not). Thesis numbers are MNIST numbers: other datasets are ignored."""
    attacks = _mnist(run.attacks)
    attacks = attacks[attacks["model"] == key]
    models = [m for m in run.models if m.key == key and m.dataset == "mnist"]
    if attacks.empty and not models:
        return None, f"no model `{key}` on mnist in this run"
    if quantity == "test_acc":
        recorded = [m.sidecar["test_accuracy"] for m in models
                    if isinstance(m.sidecar.get("test_accuracy"), (int, float))]
        if recorded:
            sizes = sorted({str(m.sidecar.get("test_size", "?")) for m in models})
            return sum(recorded) / len(recorded), (f"model sidecar, {'/'.join(sizes)} test images (thesis: 10 000)"
                                                   + _seeds(len(recorded)))
        plain = attacks[attacks["logit_view"].astype(bool)]
        if plain.empty:
            return None, "no sidecar and no undefended rows"
        return float(plain["clean_acc"].mean()), f"clean_acc of the rows, {int(plain['n'].max())} test images"
    if quantity == "train_acc":
        recorded = [t for t in (last_train_acc(m.sidecar) for m in models) if t is not None]
        if not recorded:
            return None, "no train accuracy recorded in the model sidecar"
        return sum(recorded) / len(recorded), "last epoch of the last stage that records it" + _seeds(len(recorded))
    if quantity == "unmasking_T":
        points = zero_grad_points(run)
        points = points[(points["dataset"] == "mnist") & (points["model"] == key)]
        if points.empty:
            return None, "no zero-gradient measurement"
        if points["T"].nunique() < 2 and not points["auto"].any():
            return None, f"only T = {fmt_T(points['T'].iloc[0])} in this run (needs several T, or T = \"auto\")"
        t, relation, how = unmasking_T(points)
        return (t, relation), how
    if quantity == "pgd40_eps0.15":
        return pgd_value(attacks)
    raise KeyError(quantity)


def _seeds(count: int) -> str:
    return f", mean of {count} seeds" if count > 1 else ""


def _steps(params: str) -> int | None:
    options = json.loads(params or "{}")
    for name in ("steps", "max_iter"):  # torchattacks, ART
        if isinstance(options.get(name), int):
            return options[name]
    return None


def pgd_value(attacks: pd.DataFrame):
    rows = attacks[(attacks["attack_name"] == "pgd") & (attacks["norm"] == "linf")
                   & ((attacks["eps"] - ref.PGD_EPS).abs() < 1e-9) & ((attacks["T"] / ref.PGD_T - 1).abs() < 1e-6)]
    if rows.empty:
        return None, f"no L∞ PGD row at ε = {ref.PGD_EPS:g} and T = {fmt_T(ref.PGD_T)}"
    rows = rows.assign(steps=[_steps(p) for p in rows["attack_params"]])
    exact = rows[rows["steps"] == ref.PGD_STEPS]
    chosen = exact if len(exact) else rows
    # the thesis's denominator, the clean-correct images, where the table has it (thesis_accuracy)
    acc, base = thesis_accuracy(chosen)
    by_attack = chosen.assign(acc=acc).groupby("attack").agg(acc=("acc", "mean"), seeds=("seed", "nunique"),
                                             steps=("steps", "first"), backend=("backend", "first"),
                                             flag=("unreliable", "any"), n=("n", "max"))
    preferred = by_attack[by_attack["backend"] == "torchattacks"]
    best = (preferred if len(preferred) else by_attack).sort_index().iloc[0]
    name = (preferred if len(preferred) else by_attack).sort_index().index[0]
    how = f"attack `{name}` ({best['backend']}, {best['steps']} steps), {int(best['n'])} test images"
    if best["acc"] != best["acc"]:
        return None, how + ": no image the clean net gets right, so no robust accuracy among them"
    if base == ALL_IMAGES:
        how += "; " + ALL_IMAGES
    if not len(exact):
        how += f" — not the thesis's {ref.PGD_STEPS} steps"
    how += _seeds(int(best["seeds"])) + ("; flagged unreliable" if best["flag"] else "")
    return float(best["acc"]), how


def thesis_section(run: Run) -> Section:
    section = Section("thesis", "Thesis vs this run", short="Thesis vs run")
    section.add(Table(["quantity", "model", "thesis", "denominator", "this run", "difference", "how this run measured it"],
                      thesis_rows(run), numeric={"thesis", "this run", "difference"}))
    section.add(Text(f"Thesis: {ref.THESIS}; 2000 hidden units, all 60 000 training and 10 000 test MNIST "
                     "images. Models are matched by their suite keys: `bio` is the thesis's Bio net, `bp` its BP "
                     "net (plugins/harness_reporters/reference.py holds the numbers and where they come from).", "note"))
    section.add(*comparison_blocks(run))  # Bio vs BP, paired on the same images (report_compare)
    return section
