"""Paired comparisons of two models on the same test images, from the per-image outcomes a run stores
under ``OUT/examples``: per eps and attack (worst case included), both robust accuracies, their
difference with a paired bootstrap interval over images (seeds pooled) and an exact McNemar p-value
(harness/stats.py). The two models may come from two runs that share the dataset and the images.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from harness.diagnostics import WORST, pooled_outcome
from harness.errors import HarnessError
from harness.results import GRADE_COLUMNS, read_results
from harness.rundir import RunDir
from harness.stats import LEVEL, RESAMPLES, paired_difference

CLEAN = "clean"       # the attack column of the eps = 0 line: accuracy on the unperturbed images
POOLED = "pooled"     # defense_name of a worst case over a model's logit rescalings


@dataclass
class Comparison:
    """One line: A and B under one attack at one eps. Accuracies are fractions."""

    dataset: str
    norm: str
    eps: float
    attack: str        # attack key, "worst-case", or "clean" at eps 0
    defense: str       # the defense the attack went through (A's name for a pooled worst case)
    seeds: int         # seeds paired (image outcomes pooled over them)
    images: int
    acc_a: float
    acc_b: float
    diff: float        # acc_a - acc_b
    low: float         # paired bootstrap 95 % interval of diff, resampling images
    high: float
    only_a: int        # image x seed pairs A got right and B wrong
    only_b: int
    p_value: float     # exact McNemar test on (only_a, only_b)
    flag_a: str        # masking grades of A's rows behind the line ("meaningless", "upper bound"; any seed)
    flag_b: str


COLUMNS = [f.name for f in fields(Comparison)]


@dataclass
class Side:
    """One model of one run: its per-image outcomes by line key, then by seed."""

    label: str
    outcomes: dict[tuple, dict[int, np.ndarray]]
    defenses: dict[tuple, str]  # line key -> defense text shown
    flags: dict[tuple, set[str]] = field(default_factory=dict)  # line key -> masking grades of its rows


def _load(directory: Path, digest: str, key: str) -> np.ndarray:
    from safetensors.torch import load_file

    path = RunDir(directory).cell_examples(digest)
    if not path.is_file():
        raise HarnessError(f"{path}: per-image outcomes missing; rerun `harness run` with the same --out to "
                           f"recompute that cell")
    return load_file(str(path))[key].numpy().astype(bool)


def load_side(directory: Path, model: str, defenses: tuple[str, ...] = (), label: str | None = None) -> Side:
    """Model ``model``'s per-image outcomes in the run at ``directory`` (only ``defenses`` if given)."""
    frame = read_results(Path(directory))
    ok = frame[(frame["status"] == "ok") & (frame["model"] == model)]
    if ok.empty:
        models = sorted(set(frame["model"]))
        close = difflib.get_close_matches(model, models, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise HarnessError(f"{directory}: no successful rows of model '{model}' (models: {', '.join(models)}){hint}")
    if defenses:
        keep = ok["defense"].map(lambda d: any(part in defenses for part in d.split("+")))
        ok = ok[keep]
        if ok.empty:
            raise HarnessError(f"{directory}: model '{model}' has no rows with defense {', '.join(defenses)}")
    side = Side(label or model, {}, {})

    def add(key, seed, outcome, defense, row=None):
        side.outcomes.setdefault(key, {})[int(seed)] = outcome
        side.defenses.setdefault(key, defense)
        grades = side.flags.setdefault(key, set())
        for column, grade in GRADE_COLUMNS.items():
            if row is not None and getattr(row, column):
                grades.add(grade)

    attacks, worst = ok[ok["attack"] != WORST], ok[ok["attack"] == WORST]
    # logit rescalings of the model never change a prediction: one clean line for the defenses a
    # worst case pooled (harness.diagnostics.worst_case_rows)
    pools = {part: (POOLED, row.defense) for row in worst[worst["defense_name"] == POOLED].itertuples()
             for part in row.defense.split("+")}
    for (dataset, defense, seed), rows in attacks.groupby(["dataset", "defense", "seed"]):
        pool, shown = pools.get(defense, (defense, defense))
        add((dataset, "", 0.0, CLEAN, pool), seed, _load(directory, rows["config_hash"].iloc[0], "correct"), shown)
    for row in attacks[attacks["eps"] > 0].itertuples(index=False):
        add((row.dataset, row.norm, float(row.eps), row.attack, row.defense), row.seed,
            _load(directory, row.config_hash, "robust"), row.defense, row)
    for row in worst.itertuples(index=False):
        members = attacks[(attacks["dataset"] == row.dataset) & (attacks["seed"] == row.seed)
                          & (attacks["eps"] == row.eps) & (attacks["norm"] == row.norm)
                          & attacks["defense"].isin(row.defense.split("+"))]
        robust = pooled_outcome(members, RunDir(directory).examples) if len(members) else None
        if robust is not None:
            pool = POOLED if row.defense_name == POOLED else row.defense
            add((row.dataset, row.norm, float(row.eps), WORST, pool), row.seed, robust.numpy(), row.defense, row)
    return side


def _pair_seeds(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> list[tuple[int, int]]:
    """The seeds both ran, paired with themselves; with none in common (two runs), seeds in order."""
    common = sorted(set(a) & set(b))
    return [(s, s) for s in common] if common else list(zip(sorted(a), sorted(b)))


def compare_sides(a: Side, b: Side, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Every line both sides have, as a table of :class:`Comparison` rows."""
    keys = sorted(set(a.outcomes) & set(b.outcomes), key=lambda k: (k[0], k[1], k[2], k[3] == WORST, k[3], k[4]))
    if not keys:
        raise HarnessError(f"{a.label} and {b.label} share no dataset x eps x attack x defense to compare")
    lines = []
    for key in keys:
        pairs = _pair_seeds(a.outcomes[key], b.outcomes[key])
        x = [a.outcomes[key][s] for s, _ in pairs]
        y = [b.outcomes[key][s] for _, s in pairs]
        if len({len(v) for v in x + y}) != 1:
            raise HarnessError(f"{a.label} and {b.label} were evaluated on different images ({key[0]}: "
                               f"{len(x[0])} vs {len(y[0])}); compare runs with the same [data] test_size")
        result = paired_difference(np.stack(x), np.stack(y), level=level, resamples=resamples, seed=seed)
        dataset, norm, eps, attack, _ = key
        lines.append(Comparison(dataset=dataset, norm=norm, eps=eps, attack=attack, defense=a.defenses[key],
                                seeds=len(pairs), images=result.images, acc_a=result.acc_a, acc_b=result.acc_b,
                                diff=result.diff, low=result.low, high=result.high, only_a=result.only_a,
                                only_b=result.only_b, p_value=result.p_value,
                                flag_a=", ".join(sorted(a.flags.get(key, ()))),
                                flag_b=", ".join(sorted(b.flags.get(key, ())))))
    return pd.DataFrame([asdict(line) for line in lines], columns=COLUMNS)


def compare(run: Path, model_a: str, model_b: str, against: Path | None = None, defenses: tuple[str, ...] = (),
            level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Model A of ``run`` against model B of ``against`` (default: the same run); see the module doc."""
    other = against if against is not None else run
    label_b = model_b if against is None else f"{Path(other).name}:{model_b}"
    side_a = load_side(Path(run), model_a, defenses)
    side_b = load_side(Path(other), model_b, defenses, label=label_b)
    if against is not None:
        datasets_a = {k[0] for k in side_a.outcomes}
        datasets_b = {k[0] for k in side_b.outcomes}
        if not datasets_a & datasets_b:
            raise HarnessError(f"{run} ({', '.join(sorted(datasets_a))}) and {other} ({', '.join(sorted(datasets_b))}) "
                               f"share no dataset")
    return compare_sides(side_a, side_b, level, resamples, seed)
