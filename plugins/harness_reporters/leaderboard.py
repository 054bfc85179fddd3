"""``harness leaderboard RUN_DIR...``: one line per model x dataset x threat model (norm, eps) over
one or more runs, RobustBench-style: clean accuracy, worst-case robust accuracy over every attack
run with its 95 % interval, the strongest attack, the masking flags that concern the line (graded, with
their reasons), and what produced the number.

The worst case is the run's own per-image worst-case row (harness.results.diagnostics: an image counts as
robust only if every attack at that eps failed on it, logit rescalings of the model pooled). A run
without those rows (interrupted before its end-of-run checks) falls back to the lowest robust
accuracy of any single attack, an upper bound on the per-image worst case; ``worst_case`` says
which. Seeds are averaged. Runs are not pooled with each other: each line names its suite and run.
Lines are grouped by threat model (dataset, norm, eps) and ranked within it by robust accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import MEANINGLESS, RESCALED, UPPER_BOUND, WORST, grade_text, pools, skipped_union
from harness.results.stats import seed_summary
from harness.results.table import GRADE_COLUMNS
from harness.suite.load import config_hash
from harness_reporters.report_format import fmt_T, interval
from harness_reporters.report_run import Run, load_run


@dataclass
class Entry:
    """One leaderboard line. Accuracies are fractions, as in results.csv."""

    dataset: str
    norm: str              # the threat model's norm: linf or l2
    eps: float
    rank: int              # within dataset x norm x eps, by robust accuracy (ties share a rank)
    model: str             # model key in the suite
    defense: str           # defenses pooled into the worst case ("T1+T1e5"), or one real defense
    suite: str
    run: str               # the run directory's name
    clean_acc: float
    robust_acc: float      # worst case over every attack (mean over seeds)
    robust_sd: float       # its standard deviation over seeds (nan for one seed)
    robust_low: float      # 95 % interval: t over seeds, or Wilson over the n images for one seed
    robust_high: float
    strongest_attack: str  # the attack (and T) with the lowest robust accuracy on its own
    attacks: int           # attack x defense cells behind the worst case (per seed)
    worst_case: str        # per-image (the run's worst-case rows) or min-over-attacks
    n: int                 # test images
    seeds: int
    unreliable: bool       # a masking check flagged this line's number (either grade)
    flag: str              # the grades: "meaningless", "upper bound" or both (docs/diagnostics.md)
    reasons: str           # the reasons that concern this line's eps and pool only
    learners: str
    config_hash: str       # of the worst-case row(s), "+"-joined over seeds
    model_hash: str
    versions: str          # package versions recorded in run.json
    date: str              # date of the run's last invocation (run.json), not of this table
    not_checked: str = ""  # masking checks the line's rows could not run (their grid lacks what they need)


COLUMNS = [f.name for f in fields(Entry)]


def _label(row, pool: str) -> str:
    """The attack, with the logit temperature it saw when the pool holds rescalings of the model."""
    t = row["T"]
    rescaled = pool == RESCALED and row["defense_name"] != "none" and t == t
    return f"{row['attack']} (T={fmt_T(t)})" if rescaled else row["attack"]


@dataclass
class SeedWorst:
    robust: float
    how: str            # per-image or min-over-attacks
    config_hash: str
    grades: dict[str, set[str]]  # "meaningless" / "upper bound" -> reasons
    n: int


def _reasons(texts) -> set[str]:
    return {reason for text in texts for reason in text.split("; ") if reason}


def seed_worst(cells: pd.DataFrame, worst: pd.DataFrame) -> SeedWorst:
    """One seed's worst case: the run's per-image worst-case row when there is one, else the
    strongest single attack (an upper bound)."""
    if len(worst):
        line = worst.iloc[0]
        return SeedWorst(float(line["robust_acc"]), "per-image", line["config_hash"],
                         {grade: _reasons([line[column]]) for column, grade in GRADE_COLUMNS.items()}, int(line["n"]))
    strongest = cells.sort_values("robust_acc", kind="stable").iloc[0]  # the number shown: its own flags
    return SeedWorst(float(strongest["robust_acc"]), "min-over-attacks", config_hash(sorted(cells["config_hash"])),
                     {grade: _reasons([strongest[column]]) for column, grade in GRADE_COLUMNS.items()},
                     int(strongest["n"]))


def _interval(seeds: list[SeedWorst]) -> tuple[float, float, float]:
    """(sd, low, high) of the mean worst case: t over seeds widened to at least the Wilson interval over
    the images (harness.results.stats.seed_summary), or that Wilson interval alone for one seed."""
    summary = seed_summary([s.robust for s in seeds], n=min(s.n for s in seeds))
    return summary.sd, summary.low, summary.high


def run_entries(run: Run) -> list[Entry]:
    ok = run.ok
    attacks = ok[(ok["attack"] != WORST) & (ok["eps"] > 0)]
    worst = ok[ok["attack"] == WORST]
    attacks, worst = (rows.assign(pool=pools(rows)) for rows in (attacks, worst))  # the run's own worst-case pools
    versions = ", ".join(f"{k} {v}" for k, v in sorted((run.record.get("versions") or {}).items()))
    keys = ["dataset", "model", "norm", "eps", "pool"]
    worst_by_key = {key: rows for key, rows in worst.groupby(keys + ["seed"])}
    entries = []
    for key, members in attacks.groupby(keys):
        dataset, model, norm, eps, pool = key
        seeds = [seed_worst(cells, worst_by_key.get((*key, seed), worst.iloc[:0]))
                 for seed, cells in members.groupby("seed")]
        by_attack = members.groupby(["attack", "defense"]).agg(acc=("robust_acc", "mean"), T=("T", "first"),
                                                               defense_name=("defense_name", "first"))
        strongest = by_attack.reset_index().sort_values(["acc", "attack", "defense"], kind="stable").iloc[0]
        sd, low, high = _interval(seeds)
        grades = {grade: set().union(*(s.grades[grade] for s in seeds)) for grade in GRADE_COLUMNS.values()}
        entries.append(Entry(
            dataset=dataset, norm=norm, eps=float(eps), rank=0, model=model,
            defense="+".join(sorted(set(members["defense"]))), suite=", ".join(sorted(set(members["suite"]))),
            run=run.directory.resolve().name, clean_acc=float(members["clean_acc"].mean()),
            robust_acc=sum(s.robust for s in seeds) / len(seeds), robust_sd=sd, robust_low=low, robust_high=high,
            strongest_attack=_label(strongest, pool),
            attacks=int(members.groupby("seed").size().max()), worst_case="/".join(sorted({s.how for s in seeds})),
            n=int(members["n"].max()), seeds=len(seeds), unreliable=any(grades.values()),
            flag="; ".join(grade for grade, reasons in grades.items() if reasons),
            reasons="; ".join(sorted(grades[MEANINGLESS]) + sorted(grades[UPPER_BOUND])),
            learners=members["learners"].iloc[0],
            config_hash="+".join(s.config_hash for s in seeds), model_hash="+".join(sorted(set(members["model_hash"]))),
            versions=versions, date=run.date(),
            not_checked=skipped_union(members["checks_skipped"]) if "checks_skipped" in members else ""))
    return entries


def leaderboard(directories: list[Path | str]) -> pd.DataFrame:
    """The merged table of the runs, sorted and ranked (see the module docstring)."""
    if not directories:
        raise HarnessError("give at least one run directory")
    seen, entries = set(), []
    for directory in directories:
        key = Path(directory).resolve()
        if key in seen:
            continue  # the same run named twice counts once
        seen.add(key)
        entries += run_entries(load_run(Path(directory)))
    frame = pd.DataFrame([asdict(e) for e in entries], columns=COLUMNS)
    if frame.empty:
        return frame
    order = ["dataset", "norm", "eps", "robust_acc", "clean_acc", "model", "suite", "run", "defense"]
    frame = frame.sort_values(order, ascending=[True, True, True, False, False, True, True, True, True], kind="stable")
    frame["rank"] = (frame.groupby(["dataset", "norm", "eps"])["robust_acc"]
                     .rank(method="min", ascending=False).astype(int))
    return frame.reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Fixed column order, float format and line endings: the same runs give the same bytes."""
    from harness.kit.atomic import replace_atomically

    try:
        replace_atomically(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n"))
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write ({exc.strerror or exc})") from None


DISPLAY = ["rank", "dataset", "norm", "eps", "model", "defense", "suite", "clean", "robust", "95 % interval",
           "strongest_attack", "attacks", "n", "seeds", "flag", "reasons", "learners", "date"]


def interval_text(line) -> str:
    """The robust accuracy's 95 % interval in %, with the sd over seeds when there are several."""
    text = interval(line.robust_low, line.robust_high)
    return text + (f", sd {100 * line.robust_sd:.1f}" if line.robust_sd == line.robust_sd else "")


def display_rows(frame: pd.DataFrame) -> list[list[str]]:
    """The table as text for a terminal or Markdown: accuracies in %, the flag as its grades."""
    rows = []
    for line in frame.itertuples(index=False):
        rows.append([str(line.rank), line.dataset, line.norm, f"{line.eps:g}", line.model, line.defense, line.suite,
                     f"{100 * line.clean_acc:.1f}", f"{100 * line.robust_acc:.1f}", interval_text(line),
                     line.strongest_attack, str(line.attacks), str(line.n), str(line.seeds), grade_text(line.flag or "", line.not_checked or ""),
                     line.reasons or "", line.learners, line.date])
    return rows


def display_table(frame: pd.DataFrame):
    """The table as a document table (harness_reporters.document), unreliable lines flagged."""
    from harness_reporters.document import Table

    columns = [c if c not in ("clean", "robust") else f"{c} %" for c in DISPLAY]
    return Table(columns, display_rows(frame), flagged=list(frame["unreliable"]),
                 numeric={"rank", "eps", "clean %", "robust %", "attacks", "n", "seeds"})


def to_markdown(frame: pd.DataFrame) -> str:
    from harness_reporters.document import markdown_table

    return markdown_table(display_table(frame)) + "\n"


def to_html(frame: pd.DataFrame, directories: list[Path | str]) -> str:
    """The leaderboard as one self-contained HTML page (the report's look), naming its runs."""
    from harness_reporters import document

    section = document.Section("leaderboard", "Worst-case robust accuracy", short="Leaderboard")
    if frame.empty:
        section.add(document.Text("no attacked cells (eps > 0) in these runs", "missing"))
    else:
        section.add(display_table(frame), document.Text(
            "One line per model × dataset × threat model × ε: robust accuracy (%) under the strongest of every "
            "attack run on it (per image, over the model's logit views), its 95 % interval, and the masking "
            "checks' flag; flagged lines are highlighted.", "note"))
    runs = ", ".join(str(Path(d)) for d in dict.fromkeys(directories))
    return document.to_html(document.Document("Leaderboard", "robustness-harness", [("runs", runs)], [section]),
                            footer="written by `harness leaderboard --html`")
