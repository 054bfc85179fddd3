"""The findings page's two figures: robust accuracy vs eps per attack (headline run) and worst-case
robust accuracy per factor value (sweep). PNG bytes without metadata: same tables, same bytes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.results.diagnostics import WORST
from harness_figures.show import png_bytes, pyplot
from harness_reporters.report_format import thesis_name
from harness_reporters.report_run import Run


def _strongest(rows: pd.DataFrame) -> pd.DataFrame:
    """Per eps, the row (logit view) with the lowest robust accuracy: one seed's Wilson interval."""
    picked = rows.sort_values(["eps", "robust_acc"], kind="stable").groupby("eps", as_index=False).first()
    return picked


def _bars(rows: pd.DataFrame) -> np.ndarray:
    below = (100 * (rows["robust_acc"] - rows["robust_acc_low"])).clip(lower=0).fillna(0)
    above = (100 * (rows["robust_acc_high"] - rows["robust_acc"])).clip(lower=0).fillna(0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def robust_vs_eps_figure(run: Run, models: list[str]) -> bytes:
    """One panel per model: a line per attack at its strongest logit view per eps, the worst case in
    black from the clean accuracy at eps 0; error bars: the rows' 95 % Wilson intervals (first seed)."""
    plt = pyplot()
    ok = run.ok[(run.ok["eps"] > 0) & (run.ok["seed"] == run.ok["seed"].min())]
    attacks = sorted(set(ok["attack"]) - {WORST})
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.8), squeeze=False, sharey=True)
    for ax, model in zip(axes.flat, models):
        rows = ok[ok["model"] == model]
        for index, attack in enumerate(attacks):
            curve = _strongest(rows[rows["attack"] == attack])
            if curve.empty:
                continue
            ax.errorbar(curve["eps"], 100 * curve["robust_acc"], yerr=_bars(curve), color=f"C{index % 10}",
                        marker="o", markersize=4, linewidth=1.5, elinewidth=0.8, capsize=2, label=attack)
        worst = _strongest(rows[rows["attack"] == WORST])
        if len(worst):
            clean = float(rows["clean_acc"].mean())
            ax.plot([0.0] + list(worst["eps"]), [100 * clean] + list(100 * worst["robust_acc"]), color="black",
                    linewidth=2.6, marker="s", markersize=5, zorder=5, label="worst case (per image)")
            ax.errorbar(worst["eps"], 100 * worst["robust_acc"], yerr=_bars(worst), color="black", linestyle="none",
                        elinewidth=1.2, capsize=3, zorder=5)
            for x, y in zip(worst["eps"], 100 * worst["robust_acc"]):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8, zorder=6)
        ax.set_title(thesis_name(model), fontsize=11)
        ax.set_xlabel("ε (L∞, images in [0, 1])")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("robust accuracy (%, all test images)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    rows_of_legend = math.ceil(len(labels) / 4)
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend + 0.02, 1, 1))
    return png_bytes(fig)


def sweep_figure(points, reference: dict[float, float], reference_name: str) -> bytes:
    """One panel per factor: for each eps, the points' mean worst case with its interval; the
    reference model's worst case as a dashed line of the same colour."""
    plt = pyplot()
    factors = list(dict.fromkeys(p.factor for p in points))
    budgets = sorted({eps for p in points for eps in p.worst})
    cols = min(3, max(1, len(factors)))
    rows = math.ceil(len(factors) / cols) if factors else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows + 0.5), squeeze=False, sharey=True)
    for ax in axes.flat[len(factors):]:
        ax.set_axis_off()
    for ax, factor in zip(axes.flat, factors):
        mine = [p for p in points if p.factor == factor]
        xs = np.arange(len(mine))
        for index, eps in enumerate(budgets):
            values = [p.worst.get(eps, (np.nan, np.nan, np.nan, ""))[:3] for p in mine]
            mean = np.array([100 * v[0] for v in values], dtype=float)
            below = np.clip(mean - np.array([100 * v[1] for v in values], dtype=float), 0, None)
            above = np.clip(np.array([100 * v[2] for v in values], dtype=float) - mean, 0, None)
            offset = (index - (len(budgets) - 1) / 2) * 0.12
            ax.errorbar(xs + offset, mean, yerr=np.nan_to_num(np.vstack([below, above])), color=f"C{index}",
                        linestyle="none", marker="o", markersize=5, capsize=3, label=f"ε = {eps:g}")
            if eps in reference:
                ax.axhline(100 * reference[eps], color=f"C{index}", linestyle="--", linewidth=1,
                           label=f"{reference_name}, ε = {eps:g}")
        ax.set_xticks(xs, [p.label for p in mine], fontsize=8, rotation=20, ha="right")
        ax.set_title(factor, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[:, 0]:
        ax.set_ylabel("worst-case robust accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.08 / rows + 0.02, 1, 1))
    return png_bytes(fig)
