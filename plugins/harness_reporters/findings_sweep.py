"""The sweep part of the findings page: one factor at a time, several seeds, each point paired with the
reference model of the same seeds on the same images (harness_reporters.paired), its worst case summarised over
seeds (harness.results.stats.seed_summary via the leaderboard), and the points or seeds the run lacks listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.results.diagnostics import WORST, grade_text, skipped_union
from harness.results.stats import LEVEL, fmt_p
from harness.results.table import mean_interval
from harness_reporters.document import Figure, Section, Table, Text
from harness_reporters.findings_spec import Sweep, check_model
from harness_reporters.paired import CLEAN, compare
from harness_reporters.report_format import interval, pct, with_interval
from harness_reporters.report_run import Run, load_run


@dataclass
class Point:
    factor: str
    label: str
    model: str
    seeds: list[int]
    clean: tuple[float, float, float]                  # mean, low, high
    worst: dict[float, tuple[float, float, float, str]]  # eps -> mean, low, high, masking grade
    paired: dict[float, pd.Series]                     # eps -> compare line (worst case) against the reference
    not_checked: str = ""                              # masking checks its grids could not run


CLEAN_DROP = 0.05  # a point whose clean accuracy is more than 5 points below the base's is not ranked


@dataclass
class Effect:
    factor: str
    spread: float        # max - min of the mean worst case over the factor's ranked points (fractions)
    low_label: str
    low_value: float
    high_label: str
    high_value: float
    low_interval: tuple[float, float] = (float("nan"), float("nan"))   # the extremes' 95 % intervals
    high_interval: tuple[float, float] = (float("nan"), float("nan"))
    left_out: str = ""   # points shown in the table but not ranked, and why


def _ranking(data: "SweepData", eps: float) -> tuple[list[Effect], list[str]]:
    """The factors ranked by the spread of their points' mean worst case at ``eps``: a point whose clean
    accuracy is more than :data:`CLEAN_DROP` below the base net's is left out (it trades accuracy for
    robustness), and a factor whose extreme point has one seed is not ranked (its spread may be one
    training's luck). Returns (ranked effects, the factors not ranked with why)."""
    models = [p.model for p in data.points]
    base = max(set(models), key=models.count)  # the base net is a point of every factor
    base_clean = next(p.clean[0] for p in data.points if p.model == base)
    effects, unranked = [], []
    for factor in (f for f in data.spec.factors if not f.control):
        points = [p for p in data.points if p.factor == factor.name and eps in p.worst]
        kept = [p for p in points if p.clean[0] >= base_clean - CLEAN_DROP]
        left = [f"{p.label} (clean {pct(p.clean[0])} %, base {pct(base_clean)} %)" for p in points if p not in kept]
        if len(kept) < 2:
            continue
        low = min(kept, key=lambda p: p.worst[eps][0])
        high = max(kept, key=lambda p: p.worst[eps][0])
        thin = [p.label for p in (low, high) if len(p.seeds) < 2]
        if thin:
            unranked.append(f"{factor.name}: its extreme point {', '.join(dict.fromkeys(thin))} has one seed")
            continue
        effects.append(Effect(factor.name, high.worst[eps][0] - low.worst[eps][0], low.label, low.worst[eps][0],
                              high.label, high.worst[eps][0], low.worst[eps][1:3], high.worst[eps][1:3],
                              "; ".join(left)))
    return sorted(effects, key=lambda e: -e.spread), unranked


@dataclass
class SweepData:
    spec: Sweep
    run: Run
    budgets: list[float]             # the findings file's budgets the sweep has worst cases at
    points: list[Point] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    effects: dict[float, list[Effect]] = field(default_factory=dict)  # eps -> one per ranked factor
    unranked: dict[float, list[str]] = field(default_factory=dict)    # eps -> factors not ranked, and why
    reference: dict[float, float] = field(default_factory=dict)  # eps -> the reference's mean worst case


def entries_of(run: Run) -> pd.DataFrame:
    """The run's leaderboard lines (worst case per model x eps, mean and interval over seeds)."""
    from dataclasses import asdict

    from harness_reporters.leaderboard import run_entries

    return pd.DataFrame([asdict(e) for e in run_entries(run)])


def sweep_data(sweep: Sweep, eps_list: list[float], resamples: int, spec_path: Path) -> SweepData:
    run = load_run(sweep.run.directory)
    ok, entries = run.ok, entries_of(run)
    check_model(spec_path, "sweep.reference", sweep.reference, run)
    present = sorted(set(ok.loc[ok["eps"] > 0, "eps"]))
    budgets = [float(b) for b in present if any(abs(e - b) < 1e-9 for e in eps_list)] or [float(b) for b in present]
    data = SweepData(sweep, run, budgets)
    data.reference = {float(e.eps): float(e.robust_acc) for e in entries[entries["model"] == sweep.reference]
                      .itertuples(index=False)}
    cache: dict[str, pd.DataFrame] = {}
    for factor in sweep.factors:
        for label, model in factor.points:
            rows = ok[ok["model"] == model]
            seeds = sorted(int(s) for s in set(rows["seed"]))
            if not seeds:
                data.missing.append(f"{factor.name} = {label} (`{model}`): no rows")
                continue
            if len(seeds) < sweep.seeds:
                data.missing.append(f"{factor.name} = {label} (`{model}`): {len(seeds)} of {sweep.seeds} seeds "
                                    f"(seeds {', '.join(map(str, seeds))})")
            if model not in cache and model != sweep.reference:
                cache[model] = compare(run.directory, model, sweep.reference, None, (), LEVEL, resamples, 0)
            data.points.append(_point(factor.name, label, model, seeds, rows, entries, cache.get(model)))
    for eps in budgets:
        effects, unranked = _ranking(data, eps)
        if effects:
            data.effects[eps] = effects
        if unranked:
            data.unranked[eps] = unranked
    return data


def _point(factor: str, label: str, model: str, seeds: list[int], rows: pd.DataFrame, entries: pd.DataFrame,
           paired: pd.DataFrame | None) -> Point:
    clean_mean, _, clean_low, clean_high = mean_interval(rows.drop_duplicates("seed"), "clean_acc")
    worst, lines = {}, {}
    mine = entries[entries["model"] == model]
    for entry in mine.itertuples(index=False):
        worst[float(entry.eps)] = (entry.robust_acc, entry.robust_low, entry.robust_high, entry.flag)
    if paired is not None:
        for line in paired[paired["attack"] == WORST].itertuples(index=False):
            lines[float(line.eps)] = pd.Series(line._asdict())
        # a run without worst-case rows (killed before its end-of-run checks): the strongest single
        # attack, as the leaderboard does (exact when one attack ran at that eps)
        attacked = paired[(paired["attack"] != WORST) & (paired["attack"] != CLEAN)]
        for eps, group in attacked.groupby("eps"):
            lines.setdefault(float(eps), group.sort_values("acc_a", kind="stable").iloc[0])
        clean = paired[paired["attack"] == CLEAN]
        if len(clean):
            lines[0.0] = clean.iloc[0]
    return Point(factor, label, model, seeds, (clean_mean, clean_low, clean_high), worst, lines,
                 skipped_union(mine["not_checked"]))


def _exploratory(data: SweepData) -> str:
    """The sweep's p-values are many and uncorrected: say so, with their number."""
    tests = len({(p.model, eps) for p in data.points for eps, line in p.paired.items()
                 if line is not None and eps in p.worst})
    return (f"The {tests} p-values of the table (each distinct point and ε once) are not corrected for "
            f"multiple comparisons: they are exploratory, a screen for what to measure at thesis scale, "
            f"not findings.")


def points_table(data: SweepData, a: str) -> Table:
    """One line per point: clean and worst-case accuracy over its seeds, the paired difference to the
    reference, p, and the masking grade."""
    sweep = data.spec
    budgets = sorted({e for p in data.points for e in p.worst})
    columns = ["factor", "value", "model", "seeds", "clean"]
    for eps in budgets:
        columns += [f"worst ε={eps:g}", f"− {sweep.reference} ε={eps:g} (points)", f"p ε={eps:g}"]
    columns.append("masking grade")
    rows, flagged = [], []
    for point in data.points:
        cells = [point.factor, point.label, point.model, str(len(point.seeds)), with_interval(*point.clean)]
        grades = set()
        for eps in budgets:
            mean, low, high, grade = point.worst.get(eps, (float("nan"),) * 3 + ("",))
            line = point.paired.get(eps)
            cells += [with_interval(mean, low, high),
                      "" if line is None else f"{100 * line['diff']:+.1f} {interval(line['low'], line['high'], True)}",
                      "" if line is None else fmt_p(line["p_value"], line["p_floor"])]
            if grade:
                grades.add(f"ε={eps:g}: {grade}")
        cells.append(grade_text("; ".join(sorted(grades)), point.not_checked))
        rows.append(cells)
        flagged.append(bool(grades))
    numeric = {c for c in columns if c not in ("factor", "value", "model", "masking grade")}
    means = ", ".join(f"{pct(data.reference[e])} % at ε = {e:g}" for e in budgets if e in data.reference)
    return Table(columns, rows, flagged, numeric=numeric,
                 caption=f"{a} variants and controls, each against `{sweep.reference}` (its own worst case, "
                         f"mean over its seeds: {means})")


def sweep_section(data: SweepData, a: str, command: str, suite: str, figure: bytes) -> Section:
    sweep = data.spec
    section = Section("sweep", "What makes it robust: one factor at a time", short="Factors")
    about = sweep.description or data.run.description
    section.add(Text(f"Suite `{suite}`, committed run `{sweep.run.directory.name}`; reproduce with `{command}` "
                     f"(it resumes where it stopped). {about}. Each point: clean accuracy and "
                     f"worst-case robust accuracy (%) as the mean over its seeds with a 95 % interval (t over "
                     f"seeds, widened to at least Wilson over the images), its paired difference to "
                     f"`{sweep.reference}` of the same seeds on the same images (two-level bootstrap over seeds and "
                     f"images, so the interval includes the seed spread; one seed: bootstrap over images and "
                     f"exact McNemar, the images only), and the "
                     f"masking grade (what the checks found, and those the grid could not run). With 3 seeds the bootstrap over seeds "
                     f"understates their spread (it sees 3 values), so read these intervals as the narrowest "
                     f"plausible. {_exploratory(data)}"))
    budgets = sorted({e for p in data.points for e in p.worst})
    section.add(points_table(data, a))
    if data.effects:
        effect_rows = [[f"{eps:g}", e.factor, f"{100 * e.spread:.1f}",
                        f"{e.low_label}: {with_interval(e.low_value, *e.low_interval)}",
                        f"{e.high_label}: {with_interval(e.high_value, *e.high_interval)}", e.left_out]
                       for eps, effects in data.effects.items() for e in effects]
        section.add(Table(["ε", "factor", "spread (points)", "lowest", "highest", "shown, not ranked"], effect_rows,
                          numeric={"ε", "spread (points)"},
                          caption=f"which factor moves worst-case robust accuracy most, per ε: the range of the "
                                  f"points' means over their seeds, with the extremes' 95 % intervals (each "
                                  f"factor's points include the base net; controls are not ranked; a point more "
                                  f"than {100 * CLEAN_DROP:.0f} points below the base's clean accuracy is left out, "
                                  f"and a factor whose extreme point has one seed is not ranked)"))
    if data.unranked:
        section.add(Text("Not ranked: " + "; ".join(f"at ε = {eps:g}, {why}" for eps, whys in data.unranked.items()
                                                     for why in whys) + ".", "unranked"))
    section.add(Text("What one factor at a time from a 20-epoch, 400-unit base can say: which settings move "
                     "that small net's worst case, and in which direction, beside a BP net trained as briefly. "
                     "What it cannot say: how the factors act at thesis scale (1000 Hebbian epochs, 2000 units, "
                     "300 head epochs), where they may interact — the 2000-unit point here (0.0 % after 20 Hebbian "
                     "epochs) is not the thesis-scale 2000-unit net (38.1 % at ε = 0.1 in the headline) — nor "
                     "whether two factors together add up.", "scope"))
    section.add(Figure("findings-sweep", figure, f"worst-case robust accuracy per factor value at ε = "
                       f"{', '.join(f'{e:g}' for e in budgets)}; bars: 95 % intervals over seeds (at least Wilson "
                       f"over images); dashed: `{sweep.reference}`", wide=True))
    if data.missing:
        why = f" {sweep.why_missing}" if sweep.why_missing else ""
        section.add(Text("points or seeds this run lacks: " + "; ".join(data.missing) + "." + why, "missing"))
    return section
