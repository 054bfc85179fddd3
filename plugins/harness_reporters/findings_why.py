"""The "Why" part of the findings page: the mechanism run (suites/thesis-why.toml) read as a sweep
(Hebbian checkpoints, the schedule, controls, each paired with the reference), what each family of
attacks adds to the question model's worst case, and robustness set against what the nets look like
near the data (`harness diagnose geometry`: margins, boundary distance, active units, gradients) as
rank correlations over every (model, seed) of the run, each with a bootstrap interval."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST, pooled_members, pooled_outcome
from harness.results.stats import LEVEL, fmt_p
from harness_reporters.document import Figure, Section, Table, Text
from harness_reporters.findings_field import check_in_suite, suite_models
from harness_reporters.findings_spec import Why, check_model
from harness_reporters.findings_sweep import SweepData, points_table, sweep_data
from harness_reporters.paired import compare
from harness_reporters.report_format import interval, pct

# geometry column -> what it measures, as the page names it
STATISTICS = {"boundary": "linearised L∞ distance to the boundary", "margin": "logit margin",
              "logit_scale": "logit scale", "active": "share of active hidden units",
              "zero_grad": "share of zero input gradients", "grad_l1": "input-gradient L1 norm"}
PER_VIEW = ("zero_grad", "grad_l1")   # measured per logit view T; related at the view named below


@dataclass
class Relation:
    statistic: str
    rho: float
    low: float
    high: float
    points: int

    constant: bool = False   # the statistic (or robustness) takes one value at every point

    @property
    def verdict(self) -> str:
        if self.constant:
            return "the same at every point: nothing to relate"
        if not np.isfinite(self.low):
            return "too few points (fewer than 4)"
        if self.low > 0:
            return "robustness rises with it"
        if self.high < 0:
            return "robustness falls as it rises"
        return "no monotone relation found (the interval includes 0)"


@dataclass
class WhyData:
    spec: Why
    sweep: SweepData
    families: pd.DataFrame                               # eps, family, without, all, lowers (means over seeds)
    points: pd.DataFrame = field(default_factory=pd.DataFrame)  # model, seed, robust at eps, geometry columns
    relations: list[Relation] = field(default_factory=list)
    relate_eps: float = float("nan")
    view: float = float("nan")                           # the T the per-view statistics are read at
    schedule: pd.Series | None = None                    # the paired worst-case line of the schedule question
    missing_geometry: str = ""


def family(row) -> str:
    """The attack family a row belongs to: transfers together, every other attack by name."""
    return "transfer" if row["attack_kind"] == "transfer" else str(row["attack_name"])


def family_effects(run, model: str) -> pd.DataFrame:
    """Per eps and attack family: the model's worst case over every attack (pooled as the run pools
    them), without that family, and how many points the family lowers it by; means over seeds."""
    attacks = run.attacks
    attacks = attacks[(attacks["model"] == model) & (attacks["eps"] > 0) & (attacks["attack_kind"] != "baseline")]
    records = []
    for (_, _, seed, eps, _, _), members in pooled_members(attacks):
        members = members.assign(family=members.apply(family, axis=1))
        everything = pooled_outcome(members, run.directory / "examples")
        if everything is None:
            continue
        for name in sorted(set(members["family"])):
            rest = members[members["family"] != name]
            without = pooled_outcome(rest, run.directory / "examples") if len(rest) else None
            records.append({"eps": float(eps), "seed": int(seed), "family": name,
                            "all": float(everything.float().mean()),
                            "without": float("nan") if without is None else float(without.float().mean())})
    frame = pd.DataFrame(records, columns=["eps", "seed", "family", "all", "without"])
    means = frame.groupby(["eps", "family"], as_index=False)[["all", "without"]].mean()
    means["seeds"] = frame.groupby(["eps", "family"])["seed"].nunique().values
    means["lowers"] = means["without"] - means["all"]
    return means


def spearman_interval(x: np.ndarray, y: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho with a percentile bootstrap interval over the points (pairs resampled together).

    A resample in which either variable is constant has no rank correlation; it counts as 0 (no monotone
    relation shown) rather than being dropped: dropping it would condition the interval on the resamples
    that happen to draw the few distinct points (with nine ties and one outlier, an interval that excludes
    0 and even the point estimate)."""
    from scipy.stats import spearmanr

    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        index = rng.integers(0, len(x), len(x))
        varied = np.ptp(x[index]) > 0 and np.ptp(y[index]) > 0
        draws.append(spearmanr(x[index], y[index]).statistic if varied else 0.0)
    low, high = np.percentile(draws, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return rho, float(low), float(high)


def _robust_points(run, eps: float) -> pd.DataFrame:
    """Worst-case robust accuracy per (model, seed) at ``eps``, from the run's own worst-case rows."""
    ok = run.ok
    worst = ok[(ok["attack"] == WORST) & ((ok["eps"] - eps).abs() < 1e-9)]
    if worst.empty:
        raise HarnessError(f"{run.directory}: no worst-case rows at eps = {eps:g} (was the run interrupted before "
                           f"its end-of-run checks? rerun its command to finish them)")
    return worst.groupby(["model", "seed"], as_index=False)["robust_acc"].min()


def why_data(why: Why, eps_list: list[float], a: str, resamples: int, spec_path) -> WhyData:
    sweep = sweep_data(why.sweep, eps_list, resamples, spec_path)
    check_model(spec_path, "findings.a", a, sweep.run)
    data = WhyData(why, sweep, family_effects(sweep.run, a))
    if why.schedule is not None:
        first, second = why.schedule
        for index, model in enumerate(why.schedule):
            check_model(spec_path, f"why.schedule[{index}]", model, sweep.run)
        lines = compare(sweep.run.directory, first, second, None, (), LEVEL, resamples, 0)
        worst = lines[lines["attack"] == WORST]
        if len(worst):
            data.schedule = worst.sort_values("eps").iloc[0]
    path = sweep.run.directory / why.geometry
    if not path.is_file():
        data.missing_geometry = (f"`{path.name}` is not in the run yet: `harness diagnose geometry "
                                 f"{sweep.run.directory.name}` writes it")
        return data
    geometry = pd.read_csv(path)
    data.relate_eps = sweep.budgets[0]
    data.view = float(geometry["T"].max())
    model_level = geometry.drop_duplicates(["model", "seed"]).drop(columns=list(PER_VIEW) + ["T"])
    at_view = geometry[geometry["T"] == data.view][["model", "seed", *PER_VIEW]]
    data.points = (_robust_points(sweep.run, data.relate_eps)
                   .merge(model_level, on=["model", "seed"]).merge(at_view, on=["model", "seed"]))
    for statistic in STATISTICS:
        x, y = data.points[statistic].to_numpy(float), data.points["robust_acc"].to_numpy(float)
        rho, low, high = spearman_interval(x, y, resamples)
        data.relations.append(Relation(statistic, rho, low, high, len(x), bool(np.ptp(x) == 0 or np.ptp(y) == 0)))
    return data


def geometry_figure(points: pd.DataFrame, eps: float) -> bytes:
    """Worst-case robust accuracy against the boundary distance and the active share, one dot per
    (model, seed), labelled by model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, statistic in zip(axes, ("boundary", "active")):
        for model, rows in points.groupby("model", sort=False):
            ax.scatter(rows[statistic], 100 * rows["robust_acc"], label=model, s=28)
        ax.set_xlabel(STATISTICS[statistic])
        ax.set_ylabel(f"worst-case robust accuracy at ε = {eps:g} (%)")
        ax.grid(alpha=0.3)
    axes[0].axvline(eps, color="grey", linestyle=":", linewidth=1)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def why_pending_section(why: Why, a: str, command: str, spec_path) -> Section:
    """The Why section before its run has a row: what it will show, the suite's models checked by name."""
    sweep = why.sweep
    suite = Path(sweep.run.suite)
    models = suite_models(None, suite)
    names = [key for factor in sweep.factors for _, key in factor.points] + [sweep.reference] + list(why.schedule or ())
    for name in names:
        check_in_suite(models, name, "why", suite, spec_path)
    section = Section("why", f"Why: what the robustness of `{a}` follows", short="Why")
    about = f" {sweep.description.rstrip('.')}." if sweep.description else ""
    points = "; ".join(f"{factor.name}: " + ", ".join(label for label, _ in factor.points) for factor in sweep.factors)
    schedule = (f", the schedule pair `{why.schedule[0]}` − `{why.schedule[1]}`" if why.schedule else "")
    missing = f" {sweep.why_missing}" if sweep.why_missing else ""
    return section.add(Text(
        f"Suite `{sweep.run.suite}`, run `{sweep.run.directory.name}` (not started yet: no row is committed); run it "
        f"with `{command}` (it resumes where it stopped).{about} Once it has rows, this section shows each point "
        f"({points}) with its clean and worst-case accuracy over its seeds, paired with `{sweep.reference}`"
        f"{schedule}, what each attack family adds to `{a}`'s worst case, and, after `harness diagnose geometry` "
        f"on the run, robustness against each statistic near the data.{missing}", "missing"))


def why_section(data: WhyData, a: str, command: str, suite: str, figure: bytes) -> Section:
    why, sweep = data.spec, data.sweep
    section = Section("why", f"Why: what the robustness of `{a}` follows", short="Why")
    about = why.sweep.description or sweep.run.description
    about = f" {about.rstrip('.')}." if about else ""
    section.add(Text(f"Suite `{suite}`, committed run `{why.sweep.run.directory.name}`; reproduce with `{command}` "
                     f"(it resumes where it stopped).{about} Each point as in the sweep: clean and worst-case "
                     f"accuracy over its seeds with 95 % intervals, paired with `{why.sweep.reference}` of the same "
                     f"seeds on the same images (two-level bootstrap when several seeds)."))
    section.add(points_table(sweep, a))
    section.add(Figure("findings-why", figure, "worst-case robust accuracy per point (95 % intervals over seeds); "
                                               f"dashed: `{why.sweep.reference}`", wide=True))
    if data.schedule is not None:
        line = data.schedule
        first, second = why.schedule
        section.add(Text(f"The schedule question, `{first}` − `{second}` at ε = {line['eps']:g}, worst case: "
                         f"{100 * line['diff']:+.1f} points {interval(line['low'], line['high'], True)}, "
                         f"p {fmt_p(line['p_value'], line['p_floor'])}.", "schedule"))
    if len(data.families):
        rows = [[f"{r.eps:g}", r.family, str(r.seeds), pct(r.without), pct(r.all), f"{100 * r.lowers:.1f}"]
                for r in data.families.itertuples(index=False)]
        section.add(Table(["ε", "attack family", "seeds", "worst case without it", "worst case with every attack",
                           "it lowers by (points)"], rows, numeric={"ε", "seeds", "worst case without it",
                                                                     "worst case with every attack",
                                                                     "it lowers by (points)"},
                          caption=f"what each family of attacks adds to `{a}`'s worst case (every view pooled, as "
                                  f"the run pools them; means over seeds): a family that lowers it by 0 found no "
                                  f"image the others missed"))
    if data.missing_geometry:
        section.add(Text(f"Geometry: {data.missing_geometry}.", "geometry"))
        return section
    rows = [[STATISTICS[r.statistic] + (f" (T = {data.view:g})" if r.statistic in PER_VIEW else ""),
             f"{r.rho:+.2f}" if np.isfinite(r.rho) else "–",
             f"[{r.low:+.2f}, {r.high:+.2f}]" if np.isfinite(r.low) else "–", str(r.points), r.verdict]
            for r in data.relations]
    section.add(Table(["statistic", "Spearman ρ", "95 % interval", "points", "reading"], rows,
                      numeric={"Spearman ρ", "points"},
                      caption=f"worst-case robust accuracy at ε = {data.relate_eps:g} against each statistic "
                              f"near the data, over every (model, seed) of the run (bootstrap over those points; "
                              f"an explanation the data support shows an interval that excludes 0). The points are "
                              f"not independent: the checkpoints of one seed come from one training and a model's "
                              f"seeds share its recipe, so these intervals are narrower than the truth; read them "
                              f"as a screen, not a test"))
    section.add(Figure("findings-why-geometry", geometry_figure(data.points, data.relate_eps),
                       "one dot per model and seed; dotted: ε", wide=True))
    return section
