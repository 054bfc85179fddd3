"""``harness report RUN_DIR``: one self-contained HTML page (``report.html``: CSS inline, figures as
base64 PNG, nothing fetched) and its Markdown twin (``report.md`` with the PNGs next to it).

What it shows, each part only where the run holds the data for it (else one line saying what is
missing): the suite and environment (``run.json``, ``suite.toml``, ``results.csv``); clean, test and
train accuracy per model (model sidecars); the thesis's figures 2.1 (hidden units), 2.2 (accuracy per
epoch), 3.1 (zero-gradient share vs T, from the rows), 3.2 (robust accuracy vs eps, worst case
included) and 3.3 (adversarial examples, re-attacking test images the run recorded as fooled); the
masking checks with their reasons; and every number the thesis reports next to this run's.

Models are matched to the thesis's nets by their suite keys ``bio`` and ``bp`` (harness_reporters.reference).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__
from harness_reporters import reference as ref
from harness.diagnostics import CHECKS, GROUP, WORST
from harness_reporters.document import Document, Figure, Section, Table, Text, to_html, to_markdown
from harness.errors import HarnessError
from harness.gallery import format_T
from harness.modelstore import read_sidecar
from harness.results import RESULTS_FILE, read_results, summary_table
from harness.show import (choose_param, curve_figure, features_figure, input_shape, numeric, png_bytes, pyplot,
                          stage_history, tensor_shapes)

RUN_FILE = "run.json"      # written by harness.runner
SUITE_COPY = "suite.toml"
UNMASKED_BELOW = 0.5       # "gradients stop being zero": under half the images have a zero gradient
GALLERY_EXAMPLES = 8
GALLERY_CANDIDATES = 32    # fooled images (per the run) re-attacked to find GALLERY_EXAMPLES


# -- the run on disk -----------------------------------------------------------------------------
@dataclass
class ModelFile:
    dataset: str
    key: str
    seed: int
    model_hash: str
    path: Path
    sidecar: dict[str, Any]


@dataclass
class Run:
    directory: Path
    frame: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)   # run.json ({} if absent)
    suite: dict[str, Any] = field(default_factory=dict)    # the suite.toml copy ({} if absent)
    models: list[ModelFile] = field(default_factory=list)  # models of the rows that have files

    @property
    def ok(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "ok"]

    @property
    def attacks(self) -> pd.DataFrame:
        """ok rows of real attacks (no worst-case rows)."""
        ok = self.ok
        return ok[ok["attack"] != WORST]

    @property
    def name(self) -> str:
        names = sorted(set(self.frame["suite"])) or [(self.record.get("suite") or {}).get("name", "")]
        return ", ".join(n for n in names if n) or self.directory.name

    @property
    def description(self) -> str:
        return str((self.suite.get("suite") or {}).get("description", ""))

    def date(self) -> str:
        """The date (UTC) of the last invocation that ran this directory, '' if not recorded."""
        runs = self.record.get("runs") or []
        started = str(runs[-1].get("started", "")) if runs and isinstance(runs[-1], dict) else ""
        return started[:10]

    def auto_defenses(self) -> set[str]:
        """Defense keys whose T the suite left to ``auto``."""
        defenses = self.suite.get("defenses") or {}
        return {k for k, v in defenses.items() if isinstance(v, dict) and str(v.get("T", "")).lower() == "auto"}


def rescaler_defenses() -> set[str]:
    """Defense plugin names that never change a prediction (the bare model ``none`` included): their
    rows share the model's clean accuracy and are pooled into one worst case (harness.diagnostics)."""
    from harness.plugins import load_registry

    return {"none"} | {e.obj.name for e in load_registry().entries("defenses") if e.obj.rescaler}


def check_run_dir(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise HarnessError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise HarnessError(f"{directory}: not a directory; give a run directory (the --out of `harness run`)")
    if not (directory / RESULTS_FILE).is_file():
        raise HarnessError(f"{directory}: no {RESULTS_FILE} here; is it the --out of `harness run`?")
    return directory


def load_run(directory: Path | str) -> Run:
    directory = check_run_dir(Path(directory))
    run = Run(directory, read_results(directory))
    try:
        run.record = json.loads((directory / RUN_FILE).read_text())
    except (OSError, ValueError):
        run.record = {}
    try:
        run.suite = tomllib.loads((directory / SUITE_COPY).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        run.suite = {}
    keys = run.frame[run.frame["model_hash"] != ""][["dataset", "model", "seed", "model_hash"]].drop_duplicates()
    for dataset, key, seed, model_hash in sorted(keys.itertuples(index=False, name=None)):
        path = directory / "models" / f"{key}-seed{int(seed)}-{model_hash}.safetensors"
        if path.is_file() and path.with_suffix(".json").is_file():
            try:
                run.models.append(ModelFile(dataset, key, int(seed), model_hash, path, read_sidecar(path)))
            except HarnessError:
                continue
    return run


# -- formatting ----------------------------------------------------------------------------------
def pct(value: float) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def fmt_T(value: float) -> str:
    return "–" if value is None or value != value else format_T(float(value))


def thesis_name(key: str) -> str:
    return f"{key} ({ref.MODELS[key]})" if key in ref.MODELS else key


def last_train_acc(sidecar: dict[str, Any]) -> float | None:
    """train_acc of the last epoch of the last stage that records it."""
    value = None
    for stage in sidecar.get("stages") or []:
        recorded = [e["train_acc"] for e in stage_history(stage) if numeric(e.get("train_acc"))]
        if recorded:
            value = float(recorded[-1])
    return value


def figure_name(*parts: Any) -> str:
    return "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts)


# -- sections ------------------------------------------------------------------------------------
def environment_section(run: Run) -> Section:
    section = Section("run", "Suite and environment", short="Suite")
    record, frame, ok = run.record, run.frame, run.ok
    suite_file = record.get("suite") or {}
    invocations = [r for r in record.get("runs") or [] if isinstance(r, dict)]
    versions = record.get("versions") or {}
    if not versions and run.models:
        versions = run.models[0].sidecar.get("versions") or {}
    tests = ", ".join(f"{d}: {int(g['n'].max())} test images" for d, g in ok.groupby("dataset")) or "–"
    devices = sorted(set(frame["device"]) | ({str(record["device"])} if record.get("device") else set()))
    attacks = run.attacks
    facts = [
        ("suite", run.name),
        ("description", run.description or "– (no description in the suite)"),
        ("suite file", f"{suite_file.get('path', '–')} (sha256 {str(suite_file.get('sha256') or '–')[:12]})"),
        ("run directory", str(run.directory)),
        ("invocations", "; ".join(f"{r.get('started', '?')} on {r.get('device', '?')}, {r.get('cells_todo', '?')} "
                                  f"cell(s) to do" for r in invocations) or f"– (no {RUN_FILE})"),
        ("device", ", ".join(d for d in devices if d) or "–"),
        ("packages", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "–"),
        ("datasets", tests),
        ("seeds", ", ".join(str(int(s)) for s in sorted(set(frame["seed"])))),
        ("cells", f"{len(frame[frame['attack'] != WORST])} ({int((attacks['status'] == 'ok').sum())} ok, "
                  f"{int((frame['status'] != 'ok').sum())} failed), plus {int((ok['attack'] == WORST).sum())} "
                  f"worst-case rows"),
    ]
    for (dataset, key, seed, model_hash), rows in frame[frame["attack"] != WORST].groupby(
            ["dataset", "model", "seed", "model_hash"]):
        facts.append((f"model {key} (seed {int(seed)})",
                      f"{rows['learners'].iloc[0]} — {rows['architecture'].iloc[0]} on {dataset}, "
                      f"model hash `{model_hash or '–'}`"))
    section.add(Table(["", ""], [[k, v] for k, v in facts]))
    cells = frame.sort_values(["dataset", "model", "seed", "defense", "attack", "eps"], kind="stable")
    section.add(Table(["model", "defense", "T", "attack", "backend", "eps", "seed", "status", "config_hash"],
                      [[r.model, r.defense, fmt_T(r.T), r.attack, r.backend, f"{r.eps:g}", str(int(r.seed)),
                        r.status, f"`{r.config_hash}`"] for r in cells.itertuples()],
                      flagged=[bool(u) for u in cells["unreliable"]], numeric={"T", "eps", "seed"},
                      caption="every row of results.csv with its config hash", collapsed=True))
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        section.add(Table(["model", "defense", "attack", "eps", "error"],
                          [[r.model, r.defense, r.attack, f"{r.eps:g}", r.error] for r in failed.itertuples()],
                          flagged=[True] * len(failed), caption="failed cells"))
    return section


def accuracy_section(run: Run) -> Section:
    section = Section("accuracy", "Accuracy", short="Accuracy")
    attacks = run.attacks
    if attacks.empty:
        return section.add(Text("no successful rows, so no clean accuracy", "missing"))
    files = {(m.dataset, m.key, m.seed): m for m in run.models}
    rows = []
    rescalers = rescaler_defenses()
    for (dataset, key, seed), group in attacks.groupby(["dataset", "model", "seed"]):
        clean = group[group["defense_name"].isin(rescalers)]  # the model's own predictions
        clean = clean if len(clean) else group
        model = files.get((dataset, key, int(seed)))
        sidecar = model.sidecar if model else {}
        train = last_train_acc(sidecar)
        seconds = sidecar.get("train_seconds")
        rows.append([dataset, thesis_name(key), str(int(seed)), group["learners"].iloc[0],
                     f"{pct(clean['clean_acc'].mean())} ({int(clean['n'].max())})",
                     (f"{pct(sidecar['test_accuracy'])} ({sidecar.get('test_size', '?')})"
                      if isinstance(sidecar.get("test_accuracy"), (int, float)) else "–"),
                     pct(train) if train is not None else "–",
                     f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "–"])
    section.add(Table(["dataset", "model", "seed", "learners", "clean acc % (images)", "test acc % (images)",
                       "train acc %", "training s"], rows,
                      numeric={"seed", "clean acc % (images)", "test acc % (images)", "train acc %", "training s"}))
    section.add(Text("clean accuracy: the undefended (or only rescaled) model on the test images the run attacked; "
                     "test and train accuracy: recorded by the learners in the model's sidecar (train accuracy "
                     "is measured over the last epoch's minibatches).", "note"))
    if not run.models:
        section.add(Text(f"no model files under {run.directory / 'models'}: train and test accuracy from "
                         "training are not available", "missing"))
    return section


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
            fig = features_figure(model.path, units=min(25, _units(model)), seed=0)
        except HarnessError as exc:
            section.add(Text(f"{model.key}: no first layer to draw ({exc})", "missing"))
            continue
        section.add(Figure(figure_name("fig2.1-features", model.dataset, model.key), png_bytes(fig),
                           f"Figure 2.1 — {thesis_name(model.key)}: weights of 25 random hidden units "
                           f"(blue −, red +), {model.dataset}"))
    return section


def _units(model: ModelFile) -> int:
    shapes = tensor_shapes(model.path)
    return shapes[choose_param(shapes, input_shape(model.sidecar, model.path), None, model.path)][0]


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


def unmasking_T(points: pd.DataFrame) -> tuple[float | None, str, str]:
    """(T, relation, how) for one model's points: the auto T when the suite had one, else the smallest
    T with fewer than UNMASKED_BELOW zero gradients. relation is "=", "≤" (no T below it was tried, or
    the share was already low at the smallest T) or ">" (never dropped)."""
    auto = points[points["auto"]]
    if len(auto):
        t = float(auto["T"].min())
        return t, "=", f"`T = \"auto\"` chose {fmt_T(t)} (≥ 99 % of correctly classified images un-masked)"
    grid = ", ".join(fmt_T(t) for t in points["T"])
    below = points[points["share"] < UNMASKED_BELOW]
    if below.empty:
        return float(points["T"].max()), ">", f"zero gradients ≥ 50 % at every T of the run ({grid})"
    t = float(below["T"].iloc[0])
    before = points[points["T"] < t]
    if before.empty:
        return t, "≤", (f"already {pct(below['share'].iloc[0])} % zero at the smallest T of the run ({grid}); "
                        f"the T that un-masks may be smaller")
    previous = before.iloc[-1]
    return t, "≤", (f"smallest T of the run's grid ({grid}) with < 50 % zero gradients: "
                    f"{pct(below['share'].iloc[0])} % "
                    f"at {fmt_T(t)} vs {pct(previous['share'])} % at {fmt_T(previous['T'])}")


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
        shares = ", ".join(f"T={fmt_T(r.T)}: {pct(r.share)} %" for r in group.itertuples())
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
            ax.annotate(f"{100 * row.share:.1f}%", (row.T, 100 * row.share), textcoords="offset points",
                        xytext=(6, 5), fontsize=8, color=f"C{number}")
            if row.auto:
                ax.plot([row.T], [100 * row.share], "*", markersize=14, color=f"C{number}",
                        label=f"{label}: auto T = {fmt_T(row.T)}")
    thesis_T = ref.reference("unmasking_T", "bio")
    if thesis_T:
        ax.axvline(thesis_T.value, color="0.4", linestyle=":", linewidth=1.5,
                   label=f"thesis: T ≈ {fmt_T(thesis_T.value)}")
    ax.axhline(100 * UNMASKED_BELOW, color="0.75", linestyle="--", linewidth=1)
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


# -- Figure 3.2 ----------------------------------------------------------------------------------
def robust_figure(run: Run):
    """One panel per dataset x model x norm: robust accuracy vs eps, a line per attack x defense
    (colour: attack, line style: defense, x markers where the masking checks flagged the group) and
    the worst case in black."""
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
    entries = len(attacks) + len(defenses) + 1 + bool(ok["unreliable"].any())  # legend entries, 4 per row
    legend = 0.3 + 0.2 * math.ceil(entries / 4)  # inches under the panels
    height = 4.3 * rows + legend
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height), squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    several_datasets = ok["dataset"].nunique() > 1
    for ax, ((dataset, key, norm), group) in zip(axes.flat, panels):
        lines = group[group["attack"] != WORST]
        for (attack, defense), line in lines.groupby(["attack", "defense"]):
            curve = line.groupby("eps").agg(acc=("robust_acc", "mean"), flag=("unreliable", "any")).reset_index()
            flagged = bool(curve["flag"].any())
            ax.plot(curve["eps"], 100 * curve["acc"], linestyle=styles[defenses.index(defense) % len(styles)],
                    marker="x" if flagged else "o", markersize=6 if flagged else 4,
                    color=f"C{attacks.index(attack) % 10}", linewidth=1.5)
        worst_rows = group[group["attack"] == WORST]
        # one line per pool: rescaler pools differ in name across eps when some eps saw more T values
        pools = ["pooled" if name == "pooled" else defense
                 for name, defense in zip(worst_rows["defense_name"], worst_rows["defense"])]
        for pool, worst in worst_rows.groupby(pools):
            curve = worst.groupby("eps").agg(acc=("robust_acc", "mean"), clean=("clean_acc", "mean")).reset_index()
            xs = [0.0] + list(curve["eps"])
            ys = [100 * float(curve["clean"].mean())] + list(100 * curve["acc"])
            ax.plot(xs, ys, "-", color="black", linewidth=2.8, marker="s", markersize=5, zorder=5)
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
        ax.set_ylabel("robust accuracy (%)")
    handles = [Line2D([], [], color=f"C{i % 10}", linewidth=2, label=a) for i, a in enumerate(attacks)]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i % len(styles)], label=f"defense {d}" +
                       (f" (T = {fmt_T(_defense_T(run, d))})" if _defense_T(run, d) is not None else ""))
                for i, d in enumerate(defenses)]
    handles.append(Line2D([], [], color="black", linewidth=2.8, marker="s",
                          label="worst case (per image, all attacks)"))
    if run.ok["unreliable"].any():
        handles.append(Line2D([], [], color="0.3", linestyle="none", marker="x",
                              label="× markers: flagged unreliable"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    fig.suptitle("robust accuracy vs ε", fontsize=12)
    fig.tight_layout(rect=(0, legend / height, 1, 1))
    return fig


def _defense_T(run: Run, defense: str) -> float | None:
    values = set(run.attacks.loc[run.attacks["defense"] == defense, "T"].dropna())
    return values.pop() if len(values) == 1 else None


def robust_section(run: Run) -> Section:
    section = Section("robust", "Figure 3.2 — robust accuracy vs ε", short="3.2 Robust accuracy")
    if run.attacks.empty or not (run.attacks["eps"] > 0).any():
        return section.add(Text("no successful attack at ε > 0 in this run", "missing"))
    section.add(Figure("fig3.2-robust-accuracy", png_bytes(robust_figure(run)),
                       "Figure 3.2 — robust accuracy vs ε per model, one line per attack and defense; black: worst "
                       "case over every attack and logit rescaling, per image", wide=True))
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
    section.add(Table(columns, table, flagged=[f == "unreliable" for f in summary["flag"]], numeric=numeric,
                      caption="robust accuracy (%) by ε, clean accuracy (%), share of exactly zero input gradients "
                              f"(%){'; every line: ' + same if same else ''}; highlighted: the masking checks "
                              "flagged the group"))
    return section


def _cell(value: Any, column: str) -> str:
    if column == "T" and value not in ("", None):
        return fmt_T(float(value))
    if isinstance(value, float):
        if value != value:
            return ""
        return f"{value:.1f}" if column not in ("seeds", "n") else f"{value:.0f}"
    return str(value)


# -- masking checks ------------------------------------------------------------------------------
def checks_section(run: Run) -> Section:
    section = Section("checks", "Masking checks", short="Masking checks")
    attacks = run.attacks
    if attacks.empty:
        return section.add(Text("no successful rows to check", "missing"))
    groups = []
    for key, rows in attacks.groupby(GROUP):
        fired = [name for name in CHECKS if rows[f"chk_{name}"].any()]
        groups.append((not rows["unreliable"].any(), key, rows, fired))
    groups.sort(key=lambda g: (g[0], g[1]))
    table = []
    for reliable, (dataset, key, seed, defense), rows, fired in groups:
        temperatures = ", ".join(fmt_T(t) for t in sorted(set(rows["T"].dropna())))
        table.append([thesis_name(key), defense, temperatures, str(int(seed)), "" if reliable else "unreliable",
                      ", ".join(fired) or "none", rows["reasons"].iloc[0] or "–",
                      rows["checks_skipped"].iloc[0] or "–"])
    flagged = sum(not g[0] for g in groups)
    section.add(Text(f"{flagged} of {len(groups)} model × defense groups flagged. Each check looks for a sign "
                     "that the attacks were blind rather than the model robust (docs/diagnostics.md); a flagged "
                     "group's robust accuracy is an overestimate until a stronger attack confirms it."))
    section.add(Table(["model", "defense", "T", "seed", "flag", "checks fired", "reasons", "checks skipped"], table,
                      flagged=[not g[0] for g in groups], numeric={"T", "seed"}))
    return section


# -- Figure 3.3 ----------------------------------------------------------------------------------
def gallery_row(rows: pd.DataFrame) -> pd.Series | None:
    """The cell to draw for one model: the thesis's setting where possible (PGD, eps nearest 0.15,
    the least masked T), else the L-inf attack nearest eps 0.15 with the least masking."""
    rows = rows[(rows["eps"] > 0) & (rows["norm"] == "linf") & (rows["attack_kind"] != "baseline")
                & (rows["robust_acc"] < rows["clean_acc"])]
    if rows.empty:
        return None
    order = rows.assign(not_pgd=rows["attack_name"] != "pgd", distance=(rows["eps"] - ref.PGD_EPS).abs(),
                        masked=rows["zero_grad_share"].fillna(1.0))
    return order.sort_values(["not_pgd", "distance", "masked", "seed", "attack", "defense"], kind="stable").iloc[0]


def gallery_section(run: Run, root: Path | None, device) -> Section:
    section = Section("gallery", "Figure 3.3 — adversarial examples", short="3.3 Examples")
    if root is None:
        return section.add(Text("gallery skipped (--no-gallery)", "missing"))
    files = {(m.dataset, m.key, m.seed, m.model_hash): m for m in run.models}
    drawn = False
    for (dataset, key), rows in run.attacks.groupby(["dataset", "model"]):
        row = gallery_row(rows)
        if row is None:
            section.add(Text(f"{key}: no attack at ε > 0 fooled any image", "missing"))
            continue
        model = files.get((dataset, key, int(row["seed"]), row["model_hash"]))
        if model is None:
            section.add(Text(f"{key}: the model file is not in {run.directory / 'models'}", "missing"))
            continue
        try:
            png, caption = gallery_png(run, row, model, root, device)
        except HarnessError as exc:
            section.add(Text(f"{key}: cannot draw the gallery ({exc})", "missing"))
            continue
        section.add(Figure(figure_name("fig3.3-gallery", dataset, key), png, caption, wide=True))
        drawn = True
    if drawn:
        section.add(Text("The examples are recomputed: the images are test images the run recorded as fooled "
                         "(examples/<config_hash>.safetensors holds per-image outcomes, not the adversarial "
                         "images), attacked again with the row's attack, options, ε, T and seed.", "note"))
    return section


def gallery_png(run: Run, row: pd.Series, model: ModelFile, root: Path, device) -> tuple[bytes, str]:
    """Re-attack up to GALLERY_CANDIDATES test images the run recorded as fooled in this row's cell."""
    import torch

    from harness.gallery import collect_examples, gallery_figure, load

    loaded = load(model.path, root, int(row["n"]), device)
    spec = loaded.registry.attack(row["attack_name"], row["backend"] or None)
    outcomes = run.directory / "examples" / f"{row['config_hash']}.safetensors"
    how = "the first test images"
    if outcomes.is_file():
        from safetensors.torch import load_file

        stored = load_file(str(outcomes))
        fooled = (stored["correct"].bool() & ~stored["robust"].bool()).nonzero().flatten()
        if len(fooled) and len(stored["correct"]) == len(loaded.y):
            index = fooled[:GALLERY_CANDIDATES].to(loaded.x.device)
            loaded.x, loaded.y = loaded.x[index], loaded.y[index]
            how = f"test images the run recorded as fooled ({len(fooled)} of {int(stored['correct'].sum())} correct)"
    options = {**dict(spec.defaults), **json.loads(row["attack_params"] or "{}")}
    wrapped = wrap_defense(run, row, loaded)
    torch.manual_seed(int(row["seed"]))
    try:
        attack_fn = spec.build(wrapped, float(row["eps"]), options)
        examples, attacked, correct, fooled_now = collect_examples(
            wrapped, attack_fn, spec, float(row["eps"]), loaded.x, loaded.y, GALLERY_EXAMPLES,
            f"attack '{row['attack']}'")
    except (ValueError, RuntimeError) as exc:
        raise HarnessError(f"attack '{row['attack']}' failed: {str(exc).splitlines()[0]}") from None
    summary = (f"{row['attack']} ({spec.name}@{spec.backend}), {spec.norm} ε={row['eps']:g}, T={fmt_T(row['T'])}, "
               f"seed {int(row['seed'])}: {how}; fooled again {fooled_now} of {attacked}")
    fig = gallery_figure(examples, loaded, spec, float(row["eps"]), summary)
    caption = (f"Figure 3.3 — {thesis_name(model.key)}: original, perturbation (red +, blue −) and adversarial "
               f"image, captioned true → predicted; {row['attack']} at ε = {row['eps']:g}, T = {fmt_T(row['T'])}")
    return png_bytes(fig), caption


def wrap_defense(run: Run, row: pd.Series, loaded):
    """The module the row's attack saw: the bare model, logit-scale at the row's T, or the suite's
    defense rebuilt from the suite copy (fitted on the loaded test images if it needs fitting)."""
    name, module = row["defense_name"], loaded.module
    if name == "none":
        return module
    spec = loaded.registry.get("defenses", name)
    if name == "logit-scale":
        options = {**dict(spec.defaults), "T": float(row["T"])}
    else:
        options = {k: v for k, v in ((run.suite.get("defenses") or {}).get(row["defense"]) or {}).items()
                   if k != "defense"}
        options = {**dict(spec.defaults), **options}
        if spec.fit is not None:
            options = spec.fit(module, options, loaded.x, loaded.y)
    return spec.wrap(module, options).to(loaded.x.device).eval()


# -- thesis vs this run --------------------------------------------------------------------------
def thesis_rows(run: Run) -> list[list[str]]:
    """One line per number in harness_reporters.reference: thesis, this run, difference, how it was measured."""
    rows = []
    for (quantity, key), reference in ref.REFERENCE.items():
        value, how = our_value(run, quantity, key)
        thesis = fmt_T(reference.value) if quantity == "unmasking_T" else f"{100 * reference.value:.1f} %"
        if value is None:
            rows.append([ref.QUANTITIES[quantity], thesis_name(key), thesis, "n/a in this run", "–", how])
            continue
        if quantity == "unmasking_T":
            number, relation = value
            ours = (f"{relation} " if relation != "=" else "") + fmt_T(number)
            decades = math.log10(number / reference.value)
            difference = "same power of ten" if abs(decades) < 0.05 else f"{decades:+.1f} decades"
        else:
            ours = f"{100 * value:.1f} %"
            difference = f"{100 * (value - reference.value):+.1f} pt"
        rows.append([ref.QUANTITIES[quantity], thesis_name(key), thesis, ours, difference, how])
    return rows


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
        plain = attacks[attacks["defense_name"].isin(rescaler_defenses())]
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
    by_attack = chosen.groupby("attack").agg(acc=("robust_acc", "mean"), seeds=("seed", "nunique"),
                                             steps=("steps", "first"), backend=("backend", "first"),
                                             flag=("unreliable", "any"), n=("n", "max"))
    preferred = by_attack[by_attack["backend"] == "torchattacks"]
    best = (preferred if len(preferred) else by_attack).sort_index().iloc[0]
    name = (preferred if len(preferred) else by_attack).sort_index().index[0]
    how = f"attack `{name}` ({best['backend']}, {best['steps']} steps), {int(best['n'])} test images"
    if not len(exact):
        how += f" — not the thesis's {ref.PGD_STEPS} steps"
    how += _seeds(int(best["seeds"])) + ("; flagged unreliable" if best["flag"] else "")
    return float(best["acc"]), how


def thesis_section(run: Run) -> Section:
    section = Section("thesis", "Thesis vs this run", short="Thesis vs run")
    section.add(Table(["quantity", "model", "thesis", "this run", "difference", "how this run measured it"],
                      thesis_rows(run), numeric={"thesis", "this run", "difference"}))
    section.add(Text(f"Thesis: {ref.THESIS}; 2000 hidden units, all 60 000 training and 10 000 test MNIST "
                     "images. Models are matched by their suite keys: `bio` is the thesis's Bio net, `bp` its BP "
                     "net (plugins/harness_reporters/reference.py holds the numbers and where they come from).", "note"))
    return section


# -- the report ----------------------------------------------------------------------------------
def build(run: Run, root: Path | None, device="cpu") -> Document:
    meta = [("run", str(run.directory)), ("date", run.date() or "– (no run.json)"),
            ("rows", f"{len(run.frame)} in {RESULTS_FILE}")]
    sections = [environment_section(run), thesis_section(run), accuracy_section(run), features_section(run),
                curves_section(run), gradients_section(run), robust_section(run), checks_section(run),
                gallery_section(run, root, device)]
    return Document(f"Robustness report — {run.name}", run.description, meta, sections)


@dataclass
class Written:
    html: Path
    markdown: Path
    figures: int


def write_report(run_dir: Path | str, out: Path | str | None = None, root: Path | None = None,
                 device="cpu") -> Written:
    """Write ``report.html`` and ``report.md`` (with its PNGs) into ``out`` (default RUN_DIR/report).
    ``root`` is the data root for Figure 3.3; None skips the gallery."""
    from harness.atomic import replace_atomically

    run = load_run(run_dir)
    out = Path(out) if out is not None else run.directory / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{out}: cannot create the report directory ({exc.strerror or exc})") from None
    document = build(run, root, device)
    footer = f"harness {__version__} · from {run.directory / RESULTS_FILE}"
    html, markdown = out / "report.html", out / "report.md"
    text = to_html(document, footer)
    replace_atomically(html, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    for stale in out.glob("fig[23].[0-9]-*.png"):  # figures of an earlier report this run no longer has
        stale.unlink()
    body = to_markdown(document, out) + f"\n---\n_{footer}_\n"
    replace_atomically(markdown, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
    figures = sum(isinstance(b, Figure) for s in document.sections for b in s.blocks)
    return Written(html, markdown, figures)
