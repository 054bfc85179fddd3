"""The report's figures drawn from the run's files and rows: 2.1 (hidden units), 2.2 (accuracy per
epoch), 3.1 (zero-gradient share vs T, with the un-masking T) and 3.2 (robust accuracy vs eps, with
the summary table)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST
from harness.results.table import mean_interval, summary_table
from harness_figures.show import (choose_param, curve_figure, features_figure, input_shape, png_bytes, pyplot,
                                  tensor_shapes)
from harness_reporters import reference as ref
from harness_reporters.document import Figure, Section, Table, Text
from harness_reporters.report_format import figure_name, fmt_T, pct, thesis_name
from harness_reporters.report_run import ModelFile, Run


def first_seed_models(run: Run) -> list[ModelFile]:
    """One model file per dataset x model key (the smallest seed), in the order of the rows."""
    chosen: dict[tuple[str, str], ModelFile] = {}
    for model in sorted(run.models, key=lambda m: (m.dataset, m.key, m.seed)):
        chosen.setdefault((model.dataset, model.key), model)
    return list(chosen.values())


def features_section(run: Run) -> Section:
    section = Section("features", "Figure 2.1 — hidden units", short="2.1 Features")
    models = first_seed_models(run)
    if not models:
        return section.add(Text("no trained model files in this run directory (models/*.safetensors)", "missing"))
    for model in models:
        try:
            units = min(FEATURE_UNITS, _units(model))
            fig = features_figure(model.path, units=units, seed=0)
        except HarnessError as exc:
            section.add(Text(f"{model.key}: no first layer to draw ({exc})", "missing"))
            continue
        section.add(Figure(figure_name("fig2.1-features", model.dataset, model.key), png_bytes(fig),
                           f"Figure 2.1 — {thesis_name(model.key)}: weights of {units} random hidden units "
                           f"({_colours(model)}), {model.dataset}"))
    return section


FEATURE_UNITS = 100  # the thesis's Figure 2.1: 100 random detectors of each net


def _units(model: ModelFile) -> int:
    shapes = tensor_shapes(model.path)
    return shapes[choose_param(shapes, input_shape(model.sidecar, model.path), None, model.path)][0]


def _colours(model: ModelFile) -> str:
    """How features_figure colours a unit: signed blue/red for one channel, RGB for three."""
    shape = input_shape(model.sidecar, model.path)
    return "RGB, each unit scaled to [0, 1]" if len(shape) == 3 and shape[0] == 3 else "blue −, red +"


def curves_section(run: Run) -> Section:
    section = Section("curves", "Figure 2.2 — accuracy over epochs", short="2.2 Training")
    models = first_seed_models(run)
    if not models:
        return section.add(Text("no trained model files in this run directory, so no training history", "missing"))
    for model in models:
        try:
            fig = curve_figure(model.path)
        except HarnessError as exc:
            section.add(Text(f"{model.key}: {exc}", "missing"))
            continue
        section.add(Figure(figure_name("fig2.2-curve", model.dataset, model.key), png_bytes(fig),
                           f"Figure 2.2 — {thesis_name(model.key)}: train (dashed) and test (solid) accuracy per "
                           f"epoch, and the Hebbian learner's statistics where it ran", wide=True))
    return section


# -- Figure 3.1 and the unmasking T --------------------------------------------------------------
def zero_grad_points(run: Run) -> pd.DataFrame:
    """Mean zero-gradient share per dataset x model x T over the attack rows (the share is measured
    once per model and defense on the clean images)."""
    rows = run.attacks[run.attacks["T"].notna() & run.attacks["zero_grad_share"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["dataset", "model", "T", "share", "auto"])
    auto = run.auto_defenses()
    rows = rows.assign(auto=rows["defense"].isin(auto))
    return (rows.groupby(["dataset", "model", "T"]).agg(share=("zero_grad_share", "mean"), auto=("auto", "any"))
            .reset_index().sort_values(["dataset", "model", "T"], kind="stable"))


def share_pct(share: float) -> str:
    """A share in %, with two significant digits below 0.1 %: a few images must not read as 0.0."""
    return f"{100 * share:.2g}" if 0 < share < 0.001 else pct(share)


def unmasking_T(points: pd.DataFrame) -> tuple[float | None, str, str]:
    """(T, relation, how) for one model's points, by the thesis's rule (§3.2): the smallest T of the run
    at which no test image has a zero input gradient (share <= reference.UNMASKED_SHARE). relation is
    "=" when the run also measured the power of ten below it (or a finer step), "≤" when it did not (the
    T that un-masks may be smaller), ">" when no T of the run un-masks every image."""
    grid = ", ".join(fmt_T(t) for t in points["T"])
    unmasked = points[points["share"] <= ref.UNMASKED_SHARE]
    if unmasked.empty:
        last = points.iloc[-1]
        return float(last["T"]), ">", (f"some test images keep a zero gradient at every T of the run ({grid}): "
                                       f"{share_pct(last['share'])} % at {fmt_T(last['T'])}")
    t = float(unmasked["T"].iloc[0])
    chosen = f"{fmt_T(t)}, chosen by `T = \"auto\"`" if bool(unmasked["auto"].iloc[0]) else fmt_T(t)
    before = points[points["T"] < t]
    if before.empty:
        return t, "≤", (f"no zero gradient already at the smallest T of the run ({grid}): {chosen}; "
                        f"the T that un-masks may be smaller")
    previous = before.iloc[-1]
    relation = "=" if previous["T"] * 10 >= t * (1 - 1e-9) else "≤"
    return t, relation, (f"smallest T of the run's grid ({grid}) with no zero gradient: {chosen}; "
                         f"{share_pct(previous['share'])} % zero at {fmt_T(previous['T'])}")


def gradients_section(run: Run) -> Section:
    section = Section("gradients", "Figure 3.1 — zero gradients vs T", short="3.1 Zero gradients")
    points = zero_grad_points(run)
    several = [k for k, g in points.groupby(["dataset", "model"]) if g["T"].nunique() >= 2]
    if not several:
        temperatures = ", ".join(fmt_T(t) for t in sorted(set(points["T"]))) or "none"
        return section.add(Text("Figure 3.1 needs a model evaluated at two or more logit temperatures T "
                                f"(`logit-scale` defenses at several T); this run has T = {temperatures}. "
                                "`harness diagnose gradients MODEL_FILE` draws the full curve for one model.",
                                "missing"))
    section.add(Figure("fig3.1-zero-gradients", png_bytes(gradients_figure(points, several)),
                       "Figure 3.1 — share of test images whose cross-entropy input gradient is exactly zero "
                       "(float32), per model, at the logit temperatures T of the run (dotted lines only join "
                       "them)", wide=False))
    table = []
    for (dataset, key), group in points.groupby(["dataset", "model"]):
        t, relation, how = unmasking_T(group)
        shares = ", ".join(f"T={fmt_T(r.T)}: {share_pct(r.share)} %" for r in group.itertuples())
        table.append([dataset, thesis_name(key), shares,
                      f"{relation} {fmt_T(t)}" if relation != "=" else fmt_T(t), how])
    section.add(Table(["dataset", "model", "zero-gradient % at each T", "un-masking T", "how"], table))
    section.add(Text("A finer curve for one model (every power of ten): "
                     "`harness diagnose gradients MODEL_FILE`.", "note"))
    return section


def gradients_figure(points: pd.DataFrame, keys: list[tuple[str, str]]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.3))
    several_datasets = points["dataset"].nunique() > 1
    for number, (dataset, key) in enumerate(keys):
        group = points[(points["dataset"] == dataset) & (points["model"] == key)]
        label = thesis_name(key) + (f" ({dataset})" if several_datasets else "")
        # dotted: only the run's T were measured, nothing in between
        ax.plot(group["T"], 100 * group["share"], "o:", color=f"C{number}", linewidth=1.5, markersize=8, label=label)
        for row in group.itertuples():
            ax.annotate(f"{share_pct(row.share)}%", (row.T, 100 * row.share), textcoords="offset points",
                        xytext=(6, 5), fontsize=8, color=f"C{number}")
            if row.auto:
                ax.plot([row.T], [100 * row.share], "*", markersize=14, color=f"C{number}",
                        label=f"{label}: auto T = {fmt_T(row.T)}")
    thesis_T = ref.reference("unmasking_T", "bio")
    if thesis_T:
        ax.axvline(thesis_T.value, color="0.4", linestyle=":", linewidth=1.5,
                   label=f"thesis: no zero gradient in either net from T = {fmt_T(thesis_T.value)}")
    ax.set_xscale("log")
    low, high = float(points["T"].min()), float(points["T"].max())
    low, high = min(low, thesis_T.value if thesis_T else low), max(high, thesis_T.value if thesis_T else high)
    ax.set_xlim(low / 3, high * 3)
    ax.set_ylim(-4, 104)
    ax.set_xlabel("logit temperature T (attacks and the gradient see logits / T)")
    ax.set_ylabel("images with an exactly zero input gradient (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title("zero input gradients vs T", fontsize=11)
    fig.tight_layout()
    return fig


def robust_figure(run: Run):
    """One panel per dataset x model x norm: robust accuracy vs eps, a line per attack x defense
    (colour: attack, line style: defense, x markers at the points a masking check flags) and the
    worst case in black; error bars are 95 % intervals (t over seeds, or Wilson over the images)."""
    ok = run.ok
    panels = list(ok.groupby(["dataset", "model", "norm"]))
    if not panels:
        return None
    plt = pyplot()
    from matplotlib.lines import Line2D

    attacks = sorted(set(run.attacks["attack"]))
    defenses = sorted(set(run.attacks["defense"]))
    styles = ["-", "--", ":", "-."]
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    entries = len(attacks) + len(defenses) + 2 + bool(ok["unreliable"].any())  # legend entries, 4 per row
    legend = 0.3 + 0.2 * math.ceil(entries / 4)  # inches under the panels
    height = 4.3 * rows + legend
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height), squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    several_datasets = ok["dataset"].nunique() > 1
    for ax, ((dataset, key, norm), group) in zip(axes.flat, panels):
        lines = group[group["attack"] != WORST]
        for (attack, defense), line in lines.groupby(["attack", "defense"]):
            curve = _curve(line)
            colour = f"C{attacks.index(attack) % 10}"
            ax.errorbar(curve["eps"], 100 * curve["acc"], yerr=_yerr(curve), color=colour, linewidth=1.5,
                        linestyle=styles[defenses.index(defense) % len(styles)], elinewidth=0.8, capsize=2)
            for flagged, points in curve.groupby("flag"):
                ax.plot(points["eps"], 100 * points["acc"], linestyle="none", marker="x" if flagged else "o",
                        markersize=6 if flagged else 4, color=colour)
        worst_rows = group[group["attack"] == WORST]
        # one line per pool: rescaler pools differ in name across eps when some eps saw more T values
        pools = ["pooled" if name == "pooled" else defense
                 for name, defense in zip(worst_rows["defense_name"], worst_rows["defense"])]
        for pool, worst in worst_rows.groupby(pools):
            curve = _curve(worst).merge(worst.groupby("eps")["clean_acc"].mean().rename("clean").reset_index())
            xs = [0.0] + list(curve["eps"])
            ys = [100 * float(curve["clean"].mean())] + list(100 * curve["acc"])
            ax.plot(xs, ys, "-", color="black", linewidth=2.8, marker="s", markersize=5, zorder=5)
            ax.errorbar(curve["eps"], 100 * curve["acc"], yerr=_yerr(curve), color="black", linestyle="none",
                        elinewidth=1.2, capsize=3, zorder=5)
            flagged = curve[curve["flag"]]
            ax.plot(flagged["eps"], 100 * flagged["acc"], linestyle="none", marker="x", markersize=9,
                    color="white", markeredgewidth=1.5, zorder=6)
            for x, y in zip(xs[1:], ys[1:]):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8, zorder=6,
                            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                  "alpha": 0.85})
        ax.set_title(f"{thesis_name(key)}" + (f" — {dataset}" if several_datasets else "")
                     + (f" ({norm})" if norm != "linf" else ""), fontsize=11)
        ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else norm.upper()}, images in [0, 1])")
        ax.grid(alpha=0.3)
        ax.set_ylim(-3, 103)
    for ax in axes[:, 0]:
        ax.set_ylabel("robust accuracy (%, all test images)")
    handles = [Line2D([], [], color=f"C{i % 10}", linewidth=2, label=a) for i, a in enumerate(attacks)]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i % len(styles)], label=f"defense {d}" +
                       (f" (T = {fmt_T(_defense_T(run, d))})" if _defense_T(run, d) is not None else ""))
                for i, d in enumerate(defenses)]
    handles.append(Line2D([], [], color="black", linewidth=2.8, marker="s",
                          label="worst case (per image, all attacks)"))
    if run.ok["unreliable"].any():
        handles.append(Line2D([], [], color="0.3", linestyle="none", marker="x",
                              label="×: flagged (meaningless or upper bound)"))
    handles.append(Line2D([], [], color="0.3", marker="|", markersize=8, linestyle="none",
                          label="bars: 95 % interval (t over seeds, or Wilson over images)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    fig.suptitle("robust accuracy vs ε", fontsize=12)
    fig.tight_layout(rect=(0, legend / height, 1, 1))
    return fig


def _curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Per eps: mean robust accuracy over seeds, its 95 % interval (harness.results.table.mean_interval) and
    whether a masking check flags the point (any seed)."""
    points = []
    for eps, at in rows.groupby("eps"):
        mean, _, low, high = mean_interval(at, "robust_acc")
        points.append({"eps": eps, "acc": mean, "low": low, "high": high, "flag": bool(at["unreliable"].any())})
    return pd.DataFrame(points)


def _yerr(curve: pd.DataFrame):
    """matplotlib's asymmetric error bars, in %, from the interval columns (nan: no bar)."""
    import numpy as np

    below = (100 * (curve["acc"] - curve["low"])).clip(lower=0).fillna(0)
    above = (100 * (curve["high"] - curve["acc"])).clip(lower=0).fillna(0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def _defense_T(run: Run, defense: str) -> float | None:
    values = set(run.attacks.loc[run.attacks["defense"] == defense, "T"].dropna())
    return values.pop() if len(values) == 1 else None


def robust_section(run: Run) -> Section:
    section = Section("robust", "Figure 3.2 — robust accuracy vs ε", short="3.2 Robust accuracy")
    if run.attacks.empty or not (run.attacks["eps"] > 0).any():
        return section.add(Text("no successful attack at ε > 0 in this run", "missing"))
    section.add(Figure("fig3.2-robust-accuracy", png_bytes(robust_figure(run)),
                       "Figure 3.2 — robust accuracy vs ε per model, one line per attack and defense; black: worst "
                       "case over every attack and logit rescaling, per image; bars: 95 % intervals; ×: flagged. "
                       "Accuracy over all test images (robust_acc); the thesis's Figure 3.2 counts only the images "
                       "the clean net gets right (robust_acc_cc, compared under Thesis vs this run)", wide=True))
    if not (run.ok["attack"] == WORST).any():
        section.add(Text("no worst-case rows (they are added when a run finishes; per-image outcomes in examples/)",
                         "missing"))
    summary = summary_table(run.frame)
    constant = [c for c in ("dataset", "backend", "seeds", "n") if summary[c].nunique() == 1]
    same = ", ".join(f"{c} {_cell(summary[c].iloc[0], c) or '–'}" for c in constant)
    summary = summary.drop(columns=constant)
    columns = [str(c) for c in summary.columns]
    numeric = {c for c in columns if c.startswith("eps=") or c in ("clean", "0-grad", "seeds", "n", "T")}
    table = [[_cell(v, c) for c, v in zip(columns, line)] for line in summary.itertuples(index=False)]
    section.add(Table(columns, table, flagged=[bool(f) for f in summary["flag"]], numeric=numeric,
                      caption="robust accuracy (%) by ε, clean accuracy (%), share of exactly zero input gradients "
                              f"(%){'; every line: ' + same if same else ''}; highlighted: a masking check flags "
                              "the line (flag: the grades, and the ε they concern when not all; reasons under "
                              "Masking checks)"))
    return section


def _cell(value: Any, column: str) -> str:
    if column == "T" and value not in ("", None):
        return fmt_T(float(value))
    if isinstance(value, float):
        if value != value:
            return ""
        return f"{value:.1f}" if column not in ("seeds", "n") else f"{value:.0f}"
    return str(value)
