"""The results table: one row per model x defense x attack x epsilon x seed.

:class:`Row` is the single schema every writer uses (CSV now; leaderboards and reports later).
The CSV is rewritten atomically after every row, so a killed run leaves a valid table behind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from harness.atomic import replace_atomically
from harness.errors import HarnessError

RESULTS_FILE = "results.csv"


@dataclass
class Row:
    """One results row. Accuracies and shares are fractions in [0, 1]."""

    suite: str            # suite name
    dataset: str          # dataset plugin name
    model: str            # model key in the suite (e.g. "bio")
    architecture: str     # model plugin name (e.g. "repu")
    learners: str         # training stages, e.g. "hebbian[fc1.weight,frozen] > backprop[fc2.weight]"
    defense: str          # defense key in the suite, or "none"
    defense_name: str     # defense plugin name (e.g. "logit-scale"), or "none"
    T: float              # logit temperature the attack saw (1.0 = logits untouched)
    attack: str           # attack key in the suite (e.g. "pgd-art")
    attack_name: str      # attack plugin name (e.g. "pgd")
    backend: str          # library that ran the attack
    attack_kind: str      # single-step, iterative, minimal, gradient-free or baseline
    norm: str             # the norm eps is measured in: linf or l2
    attack_params: str    # JSON of the attack's options
    eps: float            # L-infinity budget on [0, 1] images
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
    # Masking checks (harness/diagnostics.py), per dataset x model x seed x defense:
    chk_single_step: bool = False    # a single-step attack beat an iterative one
    chk_gradient_free: bool = False  # a gradient-free attack beat every white-box one
    chk_large_eps: bool = False      # attacks did not reach ~100 % success at a large eps
    chk_noise: bool = False          # random noise of the same eps beat an attack
    chk_monotone: bool = False       # robust accuracy rose with eps
    chk_converged: bool = False      # twice the iterations found more adversarial examples
    chk_gradients: bool = False      # input gradients exactly zero, NaN or inf for many images
    unreliable: bool = False         # any check fired
    reasons: str = ""                # why, one short clause per fired check
    checks_skipped: str = ""         # checks this grid could not evaluate (e.g. no eps >= 0.5)


COLUMNS = [f.name for f in fields(Row)]
TEXT_COLUMNS = [f.name for f in fields(Row) if f.type == "str"]
TIMING_COLUMNS = ["seconds"]


def to_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (harness.atomic), so readers only ever see a complete table."""
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
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise HarnessError(f"{path}: not a harness results table; missing columns {', '.join(missing)}")
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].fillna("")
    return frame


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy (%) with one column per epsilon, one line per model x defense x attack,
    worst-case lines included, and whether the masking checks flagged the line."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    # T as text: worst-case rows have no T, and NaN keys would be dropped from the pivot
    ok = ok.assign(T=[("" if t != t else f"{t:g}") for t in ok["T"]])
    keys = ["dataset", "model", "defense", "T", "attack", "backend"]
    robust = ok.pivot_table(index=keys, columns="eps", values="robust_acc", aggfunc="mean") * 100
    robust.columns = [f"eps={c:g}" for c in robust.columns]
    extra = ok.groupby(keys).agg(clean=("clean_acc", "mean"), zero_grad=("zero_grad_share", "mean"),
                                               seeds=("seed", "nunique"), n=("n", "max"),
                                               flag=("unreliable", "any"))
    extra[["clean", "zero_grad"]] *= 100
    extra["flag"] = extra["flag"].map({True: "unreliable", False: ""})
    extra = extra.rename(columns={"zero_grad": "0-grad"})
    return extra.join(robust).reset_index()
