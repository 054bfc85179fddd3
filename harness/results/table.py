"""The results table: one row per model x defense x attack x epsilon x seed.

:class:`Row` is the single schema every writer uses (CSV now; leaderboards and reports later).
The CSV is rewritten atomically after every row, so a killed run leaves a valid table behind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.kit.atomic import replace_atomically
from harness.results.rundir import RESULTS_FILE
from harness.results.stats import accuracy_interval
from harness.suite.validate import NO_DEFENSE

NAN = float("nan")
POOLED = "pooled"  # defense_name of a worst-case row pooled over a model's logit rescalings (harness.results.diagnostics)


@dataclass
class Row:
    """One results row. Accuracies and shares are fractions in [0, 1]."""

    suite: str            # suite name
    dataset: str          # dataset plugin name
    model: str            # model key in the suite (e.g. "bio")
    architecture: str     # model plugin name (e.g. "repu")
    learners: str         # training stages, e.g. "hebbian[fc1.weight,frozen] > backprop[fc2.weight]"
    defense: str          # defense key in the suite, or "none"
    defense_name: str     # defense plugin name, "none", or POOLED on a worst case over a model's rescalings
    T: float              # logit temperature the attack saw (1.0 = logits untouched)
    attack: str           # attack key in the suite (e.g. "pgd-art")
    attack_name: str      # attack plugin name (e.g. "pgd")
    backend: str          # library that ran the attack
    attack_kind: str      # single-step, iterative, minimal, gradient-free or baseline
    norm: str             # the norm eps is measured in: linf or l2
    attack_params: str    # JSON of the attack's options
    eps: float            # budget in the attack's norm on [0, 1] images: L-inf in [0, 1], L2 in [0, sqrt(d)]
    seed: int             # training and attack seed
    n: int                # number of test images attacked
    clean_acc: float      # accuracy on the unperturbed images
    robust_acc: float     # accuracy on the attacked images (= clean_acc at eps 0)
    zero_grad_share: float  # share of images whose loss gradient w.r.t. the input is exactly zero
    nonfinite_grad_share: float  # share of images with NaN or inf in that gradient
    converged_gap: float  # robust acc minus robust acc with twice the iterations (subset); NaN if n/a
    seconds: float        # wall time of the attack (timing column)
    status: str           # "ok" or "error"
    error: str            # the error message when status is "error"
    config_hash: str      # hash of everything that determines this row
    model_hash: str       # hash naming the trained model file under models/
    device: str           # device the cell ran on
    # robust accuracy among the clean-correct images only (the thesis's denominator; NaN when none is
    # correct or the row predates the column); stored next to robust_acc in the CSV (COLUMNS)
    robust_acc_cc: float = NAN
    # the defense never changes a prediction (a logit rescaler, or the bare model): the row is one
    # view of the model's logits, pooled with its other views into one worst case (harness.results.diagnostics).
    # Written when the row is made, so a run reads the same whatever is installed later; stored next
    # to defense_name in the CSV (COLUMNS)
    logit_view: bool = False
    # median relative disagreement of autograd with finite differences of the view's forward function
    # (harness/kit/integrity.py; NaN: not measured); above 5 % the gradient attacks of the view are meaningless
    grad_integrity: float = NAN
    # 95 % Wilson intervals over the n images (harness/results/stats.py), filled in by write_csv:
    clean_acc_low: float = NAN
    clean_acc_high: float = NAN
    robust_acc_low: float = NAN
    robust_acc_high: float = NAN
    # Masking checks (harness/results/diagnostics.py): each flags only the rows its evidence concerns
    chk_single_step: bool = False    # a single-step attack beat this iterative one at this eps
    chk_gradient_free: bool = False  # a gradient-free attack beat every white-box one at this eps
    chk_large_eps: bool = False      # attacks did not reach ~100 % success at this large eps
    chk_noise: bool = False          # random noise of the same eps beat this attack
    chk_monotone: bool = False       # this attack left more accuracy here than at a smaller eps
    chk_converged: bool = False      # twice this attack's steps found more (a paired test says so)
    chk_gradients: bool = False      # this view's input gradients are zero or not finite for many images
    chk_integrity: bool = False      # this view's backward is not the gradient of its forward function
    meaningless: str = ""            # masking symptoms: why this number says nothing ("" = none)
    upper_bound: str = ""            # not converged: why, and by how much, the true number is lower
    unreliable: bool = False         # either grade
    reasons: str = ""                # both grades' reasons, "; "-separated
    checks_skipped: str = ""         # checks this grid could not evaluate (e.g. no eps >= 0.5)
    test_images: str = "first"       # which test images: "first" (the first n) or "random N (seed S, ...)"


def robust_among_correct(correct, robust) -> float:
    """``robust_acc_cc``: the share of the clean-correct images the attack did not fool, as the thesis
    counts robust accuracy (appendix A attacks only the images the clean net gets right and divides
    by their number); NaN when no image is correct. Per-image boolean or 0/1 tensors."""
    correct = correct.bool()
    hits = int(correct.sum())
    return float((robust.bool() & correct).sum()) / hits if hits else NAN


def _columns() -> list[str]:
    names = [f.name for f in fields(Row)]
    for name, after in (("robust_acc_cc", "robust_acc"), ("logit_view", "defense_name")):
        names.remove(name)
        names.insert(names.index(after) + 1, name)
    return names


COLUMNS = _columns()
TEXT_COLUMNS = [f.name for f in fields(Row) if f.type == "str"]
TIMING_COLUMNS = ["seconds"]


def to_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


INTERVALS = {"clean_acc": ("clean_acc_low", "clean_acc_high"), "robust_acc": ("robust_acc_low", "robust_acc_high")}
# Columns added after the first tables were written: an older table gets them on reading
# (intervals computed from n and the accuracies, grades empty until the run is continued).
LATER_COLUMNS = {"meaningless": "", "upper_bound": "", "robust_acc_cc": NAN, "test_images": "first",
                 "grad_integrity": NAN, "chk_integrity": False,
                 **{c: NAN for pair in INTERVALS.values() for c in pair}}


def with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with its interval columns computed from n and the accuracies (see harness/results/stats.py)."""
    frame = frame.copy()
    for value, (low, high) in INTERVALS.items():
        bounds = [accuracy_interval(acc, n) for acc, n in zip(frame[value], frame["n"])]
        frame[low] = [b[0] for b in bounds]
        frame[high] = [b[1] for b in bounds]
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (harness.kit.atomic), so readers only ever see a complete table; the interval
    columns are (re)computed here, so every row has them, worst-case rows included."""
    frame = with_intervals(frame)
    replace_atomically(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))


def read_results(directory: Path) -> pd.DataFrame:
    """The results table of a run directory (or a CSV path), checked against the schema."""
    path = directory if directory.suffix == ".csv" else directory / RESULTS_FILE
    if not path.is_file():
        raise HarnessError(f"{path}: no results table here; run `harness run SUITE --out {directory}` first")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not a readable results CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in frame.columns and c not in LATER_COLUMNS and c != "logit_view"]
    if missing:
        raise HarnessError(f"{path}: not a harness results table; missing columns {', '.join(missing)}")
    if "logit_view" not in frame.columns:
        frame = frame.assign(logit_view=derived_logit_views(frame))
    if any(c not in frame.columns for c in LATER_COLUMNS):
        frame = with_intervals(frame.assign(**{c: v for c, v in LATER_COLUMNS.items() if c not in frame.columns}))
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].fillna("")
    return frame


def derived_logit_views(frame: pd.DataFrame) -> list[bool]:
    """``logit_view`` for a table written before the column existed, derived once when it is read:
    the bare model, a worst case pooled over a model's views, and the rows of the defenses that the
    installed plugins declare rescalers (the only place left that knows)."""
    from harness.plugins import load_registry

    rescalers = {NO_DEFENSE, POOLED} | {d.name for d in load_registry().defenses if d.rescaler}
    return [name in rescalers for name in frame["defense_name"].fillna("")]


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy (%) with one column per epsilon, one line per model x defense x attack,
    worst-case lines included, and which grades of masking flag the line at which eps."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    # T as text: worst-case rows have no T, and NaN keys would be dropped from the pivot
    ok = ok.assign(T=[("" if t != t else f"{t:g}") for t in ok["T"]])
    keys = ["dataset", "model", "defense", "T", "attack", "backend"]
    robust = ok.pivot_table(index=keys, columns="eps", values="robust_acc", aggfunc="mean") * 100
    robust.columns = [f"eps={c:g}" for c in robust.columns]
    extra = ok.groupby(keys).agg(clean=("clean_acc", "mean"), zero_grad=("zero_grad_share", "mean"),
                                 seeds=("seed", "nunique"), n=("n", "max"))
    extra[["clean", "zero_grad"]] *= 100
    extra["flag"] = ok.groupby(keys).apply(line_flag, include_groups=False)
    extra = extra.rename(columns={"zero_grad": "0-grad"})
    return extra.join(robust).reset_index()


GRADE_COLUMNS = {"meaningless": "meaningless", "upper_bound": "upper bound"}


def line_flag(rows: pd.DataFrame) -> str:
    """The grades that flag some row of a table line, each with the eps it concerns when not all."""
    attacked = sorted(set(rows.loc[rows["eps"] > 0, "eps"]))
    words = []
    for column, grade in GRADE_COLUMNS.items():
        eps = sorted(set(rows.loc[rows[column].fillna("") != "", "eps"]))
        if eps:
            words.append(grade if eps == attacked else f"{grade} at eps {', '.join(f'{e:g}' for e in eps)}")
    return "; ".join(words)


def flag_reasons(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(grade, reason, the rows it concerns) for every distinct reason, meaningless ones first."""
    ok = frame[frame["status"] == "ok"]
    found = []
    for column, grade in GRADE_COLUMNS.items():
        concerned: dict[str, list] = {}
        for index, text in ok[column].fillna("").items():
            for reason in filter(None, text.split("; ")):
                concerned.setdefault(reason, []).append(index)
        found += [(grade, reason, ok.loc[indices]) for reason, indices in sorted(concerned.items())]
    return found


def flag_notes(frame: pd.DataFrame) -> list[str]:
    """One line per distinct reason of either grade, with the rows it concerns (model/defense, the
    attacks and their eps, the seeds): what the terminal prints under the results table."""
    return [f"{grade}: {reason} ({rows_text(rows)})" for grade, reason, rows in flag_reasons(frame)]


def rows_text(rows: pd.DataFrame) -> str:
    """Rows named compactly: "bio/T1 seed 0: fgsm, pgd (eps 0.1, 0.2)"."""
    parts = []
    many_datasets = rows["dataset"].nunique() > 1
    for (dataset, model, defense, seed), view in rows.groupby(["dataset", "model", "defense", "seed"], sort=True):
        by_attack = {attack: tuple(sorted(set(group["eps"]))) for attack, group in view.groupby("attack")}
        clauses = {}
        for attack, eps in by_attack.items():
            clauses.setdefault(eps, []).append(attack)
        what = ", ".join(f"{', '.join(attacks)} (eps {', '.join(f'{e:g}' for e in eps)})"
                         for eps, attacks in clauses.items())
        where = f"{dataset}/" if many_datasets else ""
        parts.append(f"{where}{model}/{defense} seed {seed}: {what}")
    return "; ".join(parts)


def mean_interval(rows: pd.DataFrame, value: str = "robust_acc") -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of ``value`` over the rows of one cell's seeds: with several seeds the
    t-interval over seeds widened to at least the Wilson interval of the mean over the n images
    (harness.results.stats.seed_summary: seeds share the test images), else the row's own Wilson interval
    (sd nan)."""
    from harness.results.stats import seed_summary

    summary = seed_summary(rows[value], n=int(rows["n"].max()))
    if summary.seeds > 1:
        return summary.mean, summary.sd, summary.low, summary.high
    return summary.mean, NAN, float(rows[f"{value}_low"].iloc[0]), float(rows[f"{value}_high"].iloc[0])


def seed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per model x defense x attack x eps: clean and robust accuracy (%) with a 95 % interval.
    With one seed the interval is Wilson's over the n images (the row's own); with several, the mean
    over seeds, its standard deviation and the t-interval over seeds widened to at least the Wilson
    interval over the n images (harness/results/stats.py)."""
    ok = frame[frame["status"] == "ok"]
    ok = ok.assign(T=[("" if t != t else f"{t:g}") for t in ok["T"]])
    keys = ["dataset", "model", "defense", "T", "attack", "backend", "eps"]
    lines = []
    for key, rows in ok.groupby(keys, sort=True):
        line = dict(zip(keys, key), seeds=rows["seed"].nunique(), n=int(rows["n"].max()))
        for value in ("clean_acc", "robust_acc"):
            mean, sd, low, high = mean_interval(rows, value)
            line.update({value: 100 * mean, f"{value}_sd": 100 * sd, f"{value}_low": 100 * low,
                         f"{value}_high": 100 * high})
        line["flag"] = line_flag(rows)
        lines.append(line)
    return pd.DataFrame(lines)
