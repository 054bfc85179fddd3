"""Paired comparisons of two models on the same test images, from the per-image outcomes a run stores
under ``OUT/examples``: per eps and attack (worst case included), both robust accuracies, their
difference with a paired interval and test (harness/results/stats.py): for one seed, a bootstrap over images
and the exact McNemar test (the image sampling only); for several, a two-level bootstrap over seeds
and images of each seed's per-image difference, so the interval includes the trainings' spread. The two models may come from two runs that share the dataset and the
images.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST, pooled_members, pooled_outcome
from harness.results.rundir import RunDir
from harness.results.stats import LEVEL, RESAMPLES, TWO_LEVEL, p_floor, paired_difference, seed_summary
from harness.results.table import GRADE_COLUMNS, POOLED, read_results

CLEAN = "clean"       # the attack column of the eps = 0 line: accuracy on the unperturbed images


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
    p_value: float     # the paired test named in ``test``
    test: str          # "exact McNemar" (one seed) or "two-level bootstrap" (several; harness.results.stats)
    flag_a: str        # masking grades of A's rows behind the line ("meaningless", "upper bound"; any seed)
    flag_b: str
    unpaired: str = ""  # seeds of either side left out for want of a partner ("" = none)
    p_floor: float = 0.0    # the smallest p the test can give (resampling tests), 0 for McNemar
    unchecked_a: str = ""   # masking checks A's rows behind the line could not run (their grid lacks what they need)
    unchecked_b: str = ""
    seed_share: float = 0.0  # share of the interval's variance from the seeds (two-level only)
    t_low: float = float("nan")   # several seeds: Student-t interval of the per-seed differences
    t_high: float = float("nan")  # (harness.results.stats.PairedDifference)
    acc_a_low: float = float("nan")   # each side's accuracy interval over the paired seeds: the images' Wilson
    acc_a_high: float = float("nan")  # interval for one seed; with several, the t over the seeds widened to at
    acc_b_low: float = float("nan")   # least that (harness.results.stats.seed_summary)
    acc_b_high: float = float("nan")


COLUMNS = [f.name for f in fields(Comparison)]


@dataclass
class Side:
    """One model of one run: its per-image outcomes by line key, then by seed."""

    label: str
    outcomes: dict[tuple, dict[int, np.ndarray]]
    defenses: dict[tuple, str]  # line key -> defense text shown
    flags: dict[tuple, set[str]] = field(default_factory=dict)  # line key -> masking grades of its rows
    skipped: dict[tuple, set[str]] = field(default_factory=dict)  # line key -> checks its rows could not run


def no_rows_of(model: str, models: list[str], where: str, suffix: str = "") -> HarnessError:
    """``WHERE no successful rows of model 'M'SUFFIX (models: ...); did you mean ...?``"""
    close = difflib.get_close_matches(model, models, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(models) or "none"
    return HarnessError(f"{where}no successful rows of model '{model}'{suffix} (models: {listed}){hint}")


def _load(run: RunDir, digest: str, key: str) -> np.ndarray:
    from safetensors.torch import load_file

    path = run.cell_examples(digest)
    if not path.is_file():
        raise HarnessError(f"{path}: per-image outcomes missing; `harness run` skips a cell that has an ok row, "
                           f"so delete the row with config_hash {digest} from {run.results} and rerun "
                           f"`harness run` with the same --out to recompute that cell")
    return load_file(str(path))[key].numpy().astype(bool)


def load_side(directory: Path, model: str, defenses: tuple[str, ...] = (), label: str | None = None) -> Side:
    """Model ``model``'s per-image outcomes in the run at ``directory``: a clean line per defense (one
    for the rescalings of the model, which never change a prediction), a line per attack x defense x
    eps, and the run's worst-case lines, each pooled over the same rows as the run's worst case
    (harness.results.diagnostics.pooled_members: the rows' ``logit_view`` says which are pooled). ``defenses``: keep only the lines through one of these defense keys (a worst
    case pooling one of them stays; its pool is always the full one)."""
    run = RunDir(Path(directory))
    frame = read_results(Path(directory))
    ok = frame[(frame["status"] == "ok") & (frame["model"] == model)]
    if ok.empty:
        raise no_rows_of(model, sorted(set(frame["model"])), f"{directory}: ")

    def through(defense_text: str) -> bool:
        return any(part in defenses for part in defense_text.split("+"))

    if defenses and not ok["defense"].map(through).any():
        raise HarnessError(f"{directory}: model '{model}' has no rows with defense {', '.join(defenses)}")
    side = Side(label or model, {}, {})

    def add(key, seed, outcome, defense, row=None):
        side.outcomes.setdefault(key, {})[int(seed)] = outcome
        side.defenses.setdefault(key, defense)
        grades = side.flags.setdefault(key, set())
        skipped = side.skipped.setdefault(key, set())
        for column, grade in GRADE_COLUMNS.items():
            if row is not None and getattr(row, column):
                grades.add(grade)
        if row is not None and isinstance(getattr(row, "checks_skipped", ""), str):
            skipped.update(c for c in row.checks_skipped.split(", ") if c)

    attacks, worst = ok[ok["attack"] != WORST], ok[ok["attack"] == WORST]
    # logit rescalings of the model never change a prediction: one clean line for all of them
    rescaled = attacks[attacks["logit_view"].astype(bool)]
    pooled_text = {dataset: "+".join(sorted(set(rows["defense"]))) for dataset, rows in rescaled.groupby("dataset")}
    for (dataset, defense, seed), rows in attacks.groupby(["dataset", "defense", "seed"]):
        is_rescaled = bool(rows["logit_view"].iloc[0])
        pool, shown = (POOLED, pooled_text[dataset]) if is_rescaled else (defense, defense)
        add((dataset, "", 0.0, CLEAN, pool), seed, _load(run, rows["config_hash"].iloc[0], "correct"), shown)
    for row in attacks[attacks["eps"] > 0].itertuples(index=False):
        add((row.dataset, row.norm, float(row.eps), row.attack, row.defense), row.seed,
            _load(run, row.config_hash, "robust"), row.defense, row)  # every file a pool below reads
    # the worst cases the run wrote, by what identifies their pool: the defenses pooled, "+"-joined
    stored = {(r.dataset, r.seed, float(r.eps), r.norm, r.defense): r for r in worst.itertuples(index=False)}
    for (dataset, _, seed, eps, norm, _), members in pooled_members(attacks):
        row = stored.get((dataset, seed, float(eps), norm, "+".join(sorted(set(members["defense"])))))
        if row is None:
            continue  # no worst case of the run's own here (interrupted before its end-of-run checks)
        robust = pooled_outcome(members, run.examples)
        if robust is not None:
            pool = POOLED if row.defense_name == POOLED else row.defense
            add((dataset, norm, float(eps), WORST, pool), seed, robust.numpy(), row.defense, row)
    if defenses:  # only the lines shown are filtered: every pool above was built from all rows
        for key in [k for k, text in side.defenses.items() if not through(text)]:
            side.outcomes.pop(key)
            side.defenses.pop(key)
            side.flags.pop(key, None)
            side.skipped.pop(key, None)
    return side


def _pair_seeds(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple[list[tuple[int, int]], list[int],
                                                                               list[int]]:
    """(pairs, A's seeds left out, B's seeds left out): the seeds both ran, paired with themselves;
    with none in common (two runs), seeds paired in order, as many as the side with fewer has."""
    common = sorted(set(a) & set(b))
    if common:
        pairs = [(s, s) for s in common]
    else:
        pairs = list(zip(sorted(a), sorted(b)))
    used_a, used_b = {x for x, _ in pairs}, {y for _, y in pairs}
    return pairs, sorted(set(a) - used_a), sorted(set(b) - used_b)


def _unpaired_text(a: Side, b: Side, left_a: list[int], left_b: list[int]) -> str:
    return "; ".join(f"{side.label} seed{'s' if len(left) > 1 else ''} {', '.join(map(str, left))}"
                     for side, left in ((a, left_a), (b, left_b)) if left)


def compare_sides(a: Side, b: Side, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Every line both sides have, as a table of :class:`Comparison` rows."""
    keys = sorted(set(a.outcomes) & set(b.outcomes), key=lambda k: (k[0], k[1], k[2], k[3] == WORST, k[3], k[4]))
    if not keys:
        raise HarnessError(f"{a.label} and {b.label} share no dataset x eps x attack x defense to compare")
    lines = []
    for key in keys:
        pairs, left_a, left_b = _pair_seeds(a.outcomes[key], b.outcomes[key])
        x = [a.outcomes[key][s] for s, _ in pairs]
        y = [b.outcomes[key][s] for _, s in pairs]
        if len({len(v) for v in x + y}) != 1:
            raise HarnessError(f"{a.label} and {b.label} were evaluated on different images ({key[0]}: "
                               f"{len(x[0])} vs {len(y[0])}); compare runs with the same [data] test_size")
        result = paired_difference(np.stack(x), np.stack(y), level=level, resamples=resamples, seed=seed)
        side_a, side_b = (seed_summary([float(v.mean()) for v in side], level, result.images) for side in (x, y))
        dataset, norm, eps, attack, _ = key
        lines.append(Comparison(dataset=dataset, norm=norm, eps=eps, attack=attack, defense=a.defenses[key],
                                seeds=len(pairs), images=result.images, acc_a=result.acc_a, acc_b=result.acc_b,
                                diff=result.diff, low=result.low, high=result.high, only_a=result.only_a,
                                only_b=result.only_b, p_value=result.p_value, test=result.test,
                                flag_a=", ".join(sorted(a.flags.get(key, ()))),
                                flag_b=", ".join(sorted(b.flags.get(key, ()))),
                                unpaired=_unpaired_text(a, b, left_a, left_b),
                                p_floor=p_floor(resamples) if result.test == TWO_LEVEL else 0.0,
                                seed_share=result.seed_share, t_low=result.t_low, t_high=result.t_high,
                                acc_a_low=side_a.low, acc_a_high=side_a.high,
                                acc_b_low=side_b.low, acc_b_high=side_b.high,
                                unchecked_a=", ".join(sorted(a.skipped.get(key, ()))),
                                unchecked_b=", ".join(sorted(b.skipped.get(key, ())))))
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
