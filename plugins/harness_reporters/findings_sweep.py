"""The sweep part of the findings page: one factor at a time, several seeds, each point paired with the
reference model of the same seeds on the same images (harness.compare), its worst case summarised over
seeds (harness.stats.seed_summary via the leaderboard), and the points or seeds the run lacks listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.compare import CLEAN, compare
from harness.diagnostics import WORST
from harness.stats import LEVEL, fmt_p, seed_summary
from harness_reporters.document import Figure, Section, Table, Text
from harness_reporters.findings_spec import Sweep, check_model
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


@dataclass
class Effect:
    factor: str
    spread: float        # max - min of the mean worst case over the factor's points (fractions)
    low_label: str
    low_value: float
    high_label: str
    high_value: float


@dataclass
class SweepData:
    spec: Sweep
    run: Run
    budgets: list[float]             # the findings file's budgets the sweep has worst cases at
    points: list[Point] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    effects: dict[float, list[Effect]] = field(default_factory=dict)  # eps -> one per ranked factor
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
        effects = []
        for factor in (f for f in sweep.factors if not f.control):
            values = [(p.label, p.worst[eps][0]) for p in data.points if p.factor == factor.name and eps in p.worst]
            if len(values) >= 2:
                low, high = min(values, key=lambda v: v[1]), max(values, key=lambda v: v[1])
                effects.append(Effect(factor.name, high[1] - low[1], low[0], low[1], high[0], high[1]))
        if effects:
            data.effects[eps] = sorted(effects, key=lambda e: -e.spread)
    return data


def _point(factor: str, label: str, model: str, seeds: list[int], rows: pd.DataFrame, entries: pd.DataFrame,
           paired: pd.DataFrame | None) -> Point:
    clean_rows = rows.drop_duplicates("seed")
    summary = seed_summary(list(clean_rows["clean_acc"]), n=int(rows["n"].max()))
    worst, lines = {}, {}
    for entry in entries[entries["model"] == model].itertuples(index=False):
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
    return Point(factor, label, model, seeds, (summary.mean, summary.low, summary.high), worst, lines)


def sweep_section(data: SweepData, a: str, command: str, suite: str, figure: bytes) -> Section:
    sweep = data.spec
    section = Section("sweep", "What makes it robust: one factor at a time", short="Factors")
    about = sweep.description or data.run.description
    section.add(Text(f"Suite `{suite}`, committed run `{sweep.run.directory.name}`; reproduce with `{command}` "
                     f"(it resumes where it stopped). {about}. Each point: clean accuracy and "
                     f"worst-case robust accuracy (%) as the mean over its seeds with a 95 % interval (t over "
                     f"seeds, widened to at least Wilson over the images), its paired difference to "
                     f"`{sweep.reference}` of the same seeds on the same images (bootstrap over images; "
                     f"p: exact McNemar for one seed, sign-flip permutation over images for several), and the "
                     f"masking grade (empty: no check flags it)."))
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
                      "" if line is None else fmt_p(line["p_value"])]
            if grade:
                grades.add(f"ε={eps:g}: {grade}")
        cells.append("; ".join(sorted(grades)))
        rows.append(cells)
        flagged.append(bool(grades))
    numeric = {c for c in columns if c not in ("factor", "value", "model", "masking grade")}
    section.add(Table(columns, rows, flagged, numeric=numeric,
                      caption=f"{a} variants and controls, each against `{sweep.reference}` (its own worst case, "
                              f"mean over its seeds: " + ", ".join(f"{pct(data.reference[e])} % at ε = {e:g}" for e in
                                                                   budgets if e in data.reference) + ")"))
    if data.effects:
        effect_rows = [[f"{eps:g}", e.factor, f"{100 * e.spread:.1f}", f"{e.low_label}: {pct(e.low_value)}",
                        f"{e.high_label}: {pct(e.high_value)}"] for eps, effects in data.effects.items()
                       for e in effects]
        section.add(Table(["ε", "factor", "spread (points)", "lowest", "highest"], effect_rows,
                          numeric={"ε", "spread (points)"},
                          caption="which factor moves worst-case robust accuracy most, per ε: the range of the "
                                  "points' means over their seeds (each factor's points include the base net; "
                                  "controls are not ranked)"))
    section.add(Figure("findings-sweep", figure, f"worst-case robust accuracy per factor value at ε = "
                       f"{', '.join(f'{e:g}' for e in budgets)}; bars: 95 % intervals over seeds (at least Wilson "
                       f"over images); dashed: `{sweep.reference}`", wide=True))
    if data.missing:
        why = f" {sweep.why_missing}" if sweep.why_missing else ""
        section.add(Text("points or seeds this run lacks: " + "; ".join(data.missing) + "." + why, "missing"))
    return section
