"""``harness findings FILE``: the findings page (``docs/findings.md``), written from committed runs only.

The findings file (harness_reporters.findings_spec) names the runs: a headline run (model A and its
reference B under the strongest attacks), optionally the run of the thesis's own protocol and a
one-factor-at-a-time sweep with several seeds. The page states the answer in a few generated
sentences, then the tables and figures behind them. Every number carries its 95 % interval (Wilson
over the images for one seed; t over seeds widened to at least Wilson for several: harness.results.stats),
every A − B its paired bootstrap interval and paired test over the same images (harness_reporters.paired),
every line its masking grade, and every section its suite and the command that reproduces it. Points
or seeds a run lacks are listed, not hidden. Nothing is trained or attacked: the same committed
tables always give the same page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST, grade_text
from harness.results.stats import LEVEL, MCNEMAR, RESAMPLES, fmt_p, p_clause
from harness_reporters import reference as ref
from harness_reporters.document import Document, Figure, Section, Table, Text, to_markdown
from harness_reporters.findings_claims import claims_section
from harness_reporters.findings_figures import robust_vs_eps_figure, sweep_figure
from harness_reporters.findings_spec import RunRef, Spec, check_model, read_spec
from harness_reporters.findings_sweep import SweepData, entries_of, sweep_data, sweep_section
from harness_reporters.findings_field import field_data, field_section
from harness_reporters.findings_why import why_data, why_pending_section, why_section
from harness_reporters.paired import CLEAN, compare
from harness_reporters.report_format import fmt_T, pct, with_interval
from harness_reporters.report_run import Run, load_run


def _rel(path: Path) -> str:
    """A path as the reproduce commands name it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_command(run: RunRef) -> str:
    return f"harness run {run.suite} --out {_rel(run.directory)}"


@dataclass
class Headline:
    """The headline run, digested: per eps the worst cases of A and B (leaderboard entries) and every
    paired comparison line (harness_reporters.paired)."""

    run: Run
    entries: pd.DataFrame   # leaderboard lines of the run (one per model x eps x pool)
    paired: pd.DataFrame    # compare(run, a, b): one line per eps x attack x defense (worst case included)
    also: dict[str, pd.DataFrame] = field(default_factory=dict)  # [headline] also: compare(run, a, model)


def headline_data(spec: Spec, resamples: int) -> Headline:
    run = load_run(spec.headline.directory)
    check_model(spec.path, "findings.a", spec.a, run)
    check_model(spec.path, "findings.b", spec.b, run)
    attacks = set(run.ok["attack"])
    if spec.attack not in attacks:
        raise HarnessError(f"{spec.path}: headline.attack: '{spec.attack}' is not an attack of "
                           f"{spec.headline.directory} (attacks: {', '.join(sorted(attacks - {WORST}))})")
    paired = compare(run.directory, spec.a, spec.b, None, (), LEVEL, resamples, 0)
    also = {}
    for model in spec.also:
        check_model(spec.path, "headline.also", model, run)
        also[model] = compare(run.directory, spec.a, model, None, (), LEVEL, resamples, 0)
    return Headline(run, entries_of(run), paired, also)


def _worst_entry(entries: pd.DataFrame, model: str, eps: float) -> pd.Series | None:
    rows = entries[(entries["model"] == model) & (entries["eps"].sub(eps).abs() < 1e-9)]
    return None if rows.empty else rows.sort_values("robust_acc", kind="stable").iloc[0]


def _paired(paired: pd.DataFrame, eps: float, attack: str, defense: str | None = None) -> pd.Series | None:
    rows = paired[(paired["eps"].sub(eps).abs() < 1e-9) & (paired["attack"] == attack)]
    if defense is not None:
        rows = rows[rows["defense"] == defense]
    return None if rows.empty else rows.sort_values("acc_a", kind="stable").iloc[0]


def verdict(line: pd.Series, a: str, b: str) -> str:
    if line["low"] > 0:
        return f"{a} is more robust than {b} at this budget"
    if line["high"] < 0:
        return f"{a} is less robust than {b} at this budget"
    return f"on these images the difference between {a} and {b} is not distinguishable from zero"


def _flags(line: pd.Series) -> str:
    """The grades found (empty when none): what marks a line as flagged."""
    return "; ".join(f"{side}: {flag}" for side, flag in (("A", line["flag_a"]), ("B", line["flag_b"])) if flag)


def _grades(line) -> str:
    """A masking-grade cell: per side, the grades found or "none found", and the checks not run."""
    get = line.get if hasattr(line, "get") else (lambda name, default="": getattr(line, name, default))
    return "; ".join(f"{side}: {grade_text(get(f'flag_{key}', ''), get(f'unchecked_{key}', '') or '')}"
                     for side, key in (("A", "a"), ("B", "b")))


def _seed_count(seeds) -> str:
    return "1 seed" if len(seeds) == 1 else f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"


def _seeds_text(run, models) -> str:
    """"1 seed" or "3 seeds (0, 1, 2)": how many trainings of each model the headline rests on; per model
    ("bio 2 seeds (0, 1), bp 1 seed") while a run that adds seeds in turn holds more of some nets."""
    per = {m: sorted(int(s) for s in set(run.ok.loc[run.ok["model"] == m, "seed"])) for m in models}
    if len({tuple(seeds) for seeds in per.values()}) == 1:
        return _seed_count(next(iter(per.values())))
    return ", ".join(f"{model} {_seed_count(seeds)}" for model, seeds in per.items())


def clean_sentence(spec: Spec) -> str:
    """Clean accuracy of A, B and the ``also`` models on the whole test split of the [clean] run (the same
    trained models, evaluated on every image): the mean over the seeds it holds with the seed-level
    interval (harness.results.table.mean_interval: Student t over seeds, at least the Wilson interval of the
    images), and each seed's value; "" without a [clean] run."""
    from harness.results.table import mean_interval

    if spec.clean is None:
        return ""
    run = load_run(spec.clean.directory)
    rows = run.ok[run.ok["attack"] != WORST]
    parts = []
    for model in (spec.a, spec.b, *spec.also):
        check_model(spec.path, "clean.run", model, run)
        per_seed = rows[rows["model"] == model].sort_values("seed", kind="stable").drop_duplicates("seed")
        mean, _, low, high = mean_interval(per_seed, "clean_acc")
        values = ", ".join(pct(v) for v in per_seed["clean_acc"])
        parts.append(f"{model} {with_interval(mean, low, high)} % "
                     f"({_seed_count([int(s) for s in per_seed['seed']])}: {values})")
    return (f"Clean accuracy on all {int(rows['n'].max())} test images (the same trained nets; committed run "
            f"`{_rel(spec.clean.directory)}`, suite `{spec.clean.suite}`; interval over the seeds, at least the "
            f"images' Wilson interval): " + "; ".join(parts) + ".")


def _weakness(spec: Spec, pgd: dict, strong: dict) -> str:
    """The share of the thesis-protocol PGD figure that the stronger attacks remove: attack weakness."""
    shares = [(label, 1 - strong[key] / pgd[key]) for label, key in ((spec.a, "a"), (spec.b, "b")) if pgd[key] > 0]
    if not shares:
        return ""
    return (" So most of the PGD-40 figure is the attack's weakness, not the nets' robustness: "
            + " and ".join(f"{100 * share:.0f} % of {label}'s" for label, share in shares) + " PGD-40 number "
            "is gone under the stronger attacks.")


def first_images_bias(spec: Spec, first: int = 1000) -> str:
    """PGD-40 at the thesis's eps and T on the thesis run's whole test split: the first ``first`` images
    against the rest (Fisher's exact test) and against a seeded stratified random sample of as many
    (harness.suite.sample, with the dataset's labels), from the per-image outcomes; "" when that run does not
    cover more than ``first`` images or its outcomes are not committed."""
    from safetensors.torch import load_file
    from scipy.stats import fisher_exact

    from harness.errors import HarnessError
    from harness.kit.cli_options import default_data_root
    from harness.plugins import load_registry
    from harness.suite.sample import Sample

    if spec.thesis is None:
        return ""
    run = load_run(spec.thesis.directory)
    ok = run.ok[(run.ok["eps"].sub(ref.PGD_EPS).abs() < 1e-9) & (run.ok["attack_name"] == "pgd")
                & (run.ok["T"].sub(ref.PGD_T).abs() < 1) & (run.ok["model"] == spec.a)
                & run.ok["attack_params"].str.contains(f'"steps": {ref.PGD_STEPS}')]
    if ok.empty or int(ok["n"].iloc[0]) <= first:
        return ""
    row = ok.iloc[0]
    path = spec.thesis.directory / "examples" / f"{row['config_hash']}.safetensors"
    if not path.is_file():
        return ""
    robust = load_file(str(path))["robust"].bool()
    head, rest = robust[:first], robust[first:]
    p = fisher_exact([[int(head.sum()), first - int(head.sum())], [int(rest.sum()), len(rest) - int(rest.sum())]])[1]
    sample = ""
    try:  # the sample needs the labels (stratified); without the dataset here, only first vs rest
        labels = load_registry().get("datasets", row["dataset"]).load(default_data_root(), False)[1]
    except HarnessError:
        labels = None
    if labels is not None and len(labels) == len(robust):
        chosen = Sample(first, 0).indices(labels)
        sample = f", a stratified random {first} (seed 0) {pct(float(robust[chosen].float().mean()))} %"
    return (f"The first {first} test images are harder than the rest: PGD-40 at ε = {ref.PGD_EPS:g} (T = "
            f"{fmt_T(ref.PGD_T)}) leaves {spec.a} {pct(float(head.float().mean()))} % of them against "
            f"{pct(float(rest.float().mean()))} % of the other {len(rest)} (Fisher's exact p = {p:.2g}; "
            f"all {len(robust)}: {pct(float(robust.float().mean()))} %{sample}; `{_rel(spec.thesis.directory)}`), "
            f"so figures on the first {first} are biased low; new suites draw a random sample "
            f"(`[data] test_subset`).")


def caveats(spec: Spec, head: Headline, sweep: SweepData | None) -> list[str]:
    """What a reviewer should read before the answer, from the same tables."""
    notes = []
    if int(head.paired["seeds"].max()) == 1:  # A and B pair up on one seed only
        notes.append("The headline compares one trained Bio net with one trained BP net: its intervals cover "
                     "which test images were drawn, not training. BP's number moves with its training protocol "
                     "(one Adam per stage vs a new Adam each epoch) by more than those intervals; "
                     "suites/thesis-seeds.toml measures both protocols over five seeds on a random sample of "
                     "the test set.")
    bias = first_images_bias(spec, int(head.run.ok["n"].max()))
    if bias:
        notes.append(bias)
    largest = max(spec.eps)
    ea, eb = _worst_entry(head.entries, spec.a, largest), _worst_entry(head.entries, spec.b, largest)
    if ea is not None and eb is not None and max(ea["robust_acc"], eb["robust_acc"]) < 0.2:
        notes.append(f"At ε = {largest:g}, the thesis's budget, both nets are nearly broken: the worst case leaves "
                     f"{spec.a} {pct(ea['robust_acc'])} % and {spec.b} {pct(eb['robust_acc'])} %. A difference of a "
                     f"few points there says little about usable robustness.")
    if sweep is not None:
        controls = [p for p in sweep.points if any(f.control and f.name == p.factor for f in sweep.spec.factors)]
        best = [(p, eps) for eps in spec.eps for p in controls if eps in p.worst]
        if best:
            point, eps = max(best, key=lambda item: item[0].worst[item[1]][0])
            notes.append(f"For scale: the control '{point.label}' of the sweep (`{point.model}`, "
                         f"{len(point.seeds)} seeds, 400 units) keeps {with_interval(*point.worst[eps][:3])} % "
                         f"at ε = {eps:g}, more than any Hebbian setting measured.")
    return notes


# -- the answer ----------------------------------------------------------------------------------
def answer_section(spec: Spec, head: Headline, sweep: SweepData | None) -> Section:
    section = Section("answer", "The answer", short="Answer")
    notes = caveats(spec, head, sweep)
    if notes:
        section.add(Text("**Read first.** " + " ".join(notes), "caveats"))
    run, n = head.run, int(head.run.ok["n"].max())
    sentences = []
    for eps in spec.eps:
        line = _paired(head.paired, eps, WORST)
        ea, eb = _worst_entry(head.entries, spec.a, eps), _worst_entry(head.entries, spec.b, eps)
        if line is None or ea is None or eb is None:
            sentences.append(f"At ε = {eps:g} the headline run has no worst case of both {spec.a} and {spec.b}.")
            continue
        attack = _paired(head.paired, eps, spec.attack)
        named = (f" {spec.attack} alone (its strongest logit view) leaves {spec.a} at {pct(attack['acc_a'])} % and "
                 f"{spec.b} at {pct(attack['acc_b'])} %." if attack is not None else "")
        sentences.append(
            f"At ε = {eps:g} (L∞), the worst case over every attack of the headline run leaves {spec.a} at "
            f"{with_interval(ea['robust_acc'], ea['robust_low'], ea['robust_high'])} % and {spec.b} at "
            f"{with_interval(eb['robust_acc'], eb['robust_low'], eb['robust_high'])} % of {n} test images: "
            f"{spec.a} − {spec.b} = {with_interval(line['diff'], line['low'], line['high'], True)} points "
            f"(paired, {line['test']} {p_clause(line['p_value'], line['p_floor'])}{_coverage(line)}), so "
            f"{verdict(line, spec.a, spec.b)}.{named}"
            + (f" Masking grades: {_flags(line)}." if _flags(line) else ""))
    for model, paired in head.also.items():
        for eps in spec.eps:
            line, other = _paired(paired, eps, WORST), _worst_entry(head.entries, model, eps)
            if line is None or other is None:
                continue
            sentences.append(
                f"Against {model} at ε = {eps:g}: {model} keeps "
                f"{with_interval(other['robust_acc'], other['robust_low'], other['robust_high'])} %, "
                f"{spec.a} − {model} = {with_interval(line['diff'], line['low'], line['high'], True)} points "
                f"(paired, {line['test']} {p_clause(line['p_value'], line['p_floor'])}{_coverage(line)}), so "
                f"{verdict(line, spec.a, model)}.")
    section.add(Text(f"Headline run: `{_rel(run.directory)}` (suite `{spec.headline.suite}`, "
                     f"{_seeds_text(run, (spec.a, spec.b, *head.also))}, {n} test images). "
                     + " ".join(sentences)))
    clean = clean_sentence(spec)
    if clean:
        section.add(Text(clean))
    survival = survival_rows(spec, head)
    if survival:
        thesis_line = next((r for r in survival if r["source"] == "thesis text"), None)
        ours = [r for r in survival if r["source"] != "thesis text"]
        if thesis_line and ours:
            weakest = ours[0]
            strongest = min((r for r in ours if not r["attack"].startswith("worst case")), key=lambda r: r["a"])
            worst = next((r for r in ours if r["attack"].startswith("worst case")), None)
            section.add(Text(
                f"How much of the thesis's figure survives: the thesis reports {pct(thesis_line['a'])} % for "
                f"{spec.a} and {pct(thesis_line['b'])} % for {spec.b} under PGD-40 at ε = {ref.PGD_EPS:g} "
                f"(T = {fmt_T(ref.PGD_T)}, among the clean-correct images); with the same attack this protocol "
                f"measures {pct(weakest['a'])} % and {pct(weakest['b'])} % ({weakest['source']}), and "
                f"{strongest['attack']} leaves {pct(strongest['a'])} % and {pct(strongest['b'])} % "
                f"({strongest['source']}), the same denominator"
                + (f"; the worst case over every attack, {pct(worst['a'])} % and {pct(worst['b'])} %."
                   if worst is not None else ".")
                + _weakness(spec, weakest, strongest if worst is None else worst)))
    if sweep is not None and sweep.effects:
        parts = []
        for eps, effects in sweep.effects.items():
            top = effects[0]
            others = "; ".join(f"{e.factor} {100 * e.spread:.1f}" for e in effects[1:])
            parts.append(f"at ε = {eps:g}, {top.factor} moves {spec.a}'s worst-case robust accuracy most, from "
                         f"{pct(top.low_value)} % ({top.low_label}) to {pct(top.high_value)} % ({top.high_label}), "
                         f"a spread of {100 * top.spread:.1f} points"
                         + (f" (the others: {others} points)" if others else "")
                         + (f"; not ranked: {', '.join(sweep.unranked[eps])}" if eps in sweep.unranked else ""))
        section.add(Text(f"What moves it (sweep `{_rel(sweep.spec.run.directory)}`: a 400-unit net after 20 Hebbian "
                         f"epochs, one factor at a time; worst case, means over the seeds each point has, points "
                         f"more than 5 points below the base's clean accuracy left out): " + "; ".join(parts) + "."))
    return section


# -- thesis scale, strong attacks -----------------------------------------------------------------
def headline_section(spec: Spec, head: Headline) -> Section:
    section = Section("headline", "Thesis scale under the strongest attacks", short="Strong attacks")
    section.add(Text(f"Suite `{spec.headline.suite}`, committed run `{_rel(head.run.directory)}`; reproduce with "
                     f"`{run_command(spec.headline)}`. {head.run.description}"))
    rows, flagged = [], []
    for eps in sorted(set(head.paired.loc[head.paired["attack"] == WORST, "eps"])):
        line, ea, eb = (_paired(head.paired, eps, WORST), _worst_entry(head.entries, spec.a, eps),
                        _worst_entry(head.entries, spec.b, eps))
        if line is None or ea is None or eb is None:
            continue
        rows.append([f"{eps:g}", with_interval(ea["robust_acc"], ea["robust_low"], ea["robust_high"]),
                     ea["strongest_attack"], with_interval(eb["robust_acc"], eb["robust_low"], eb["robust_high"]),
                     eb["strongest_attack"], with_interval(line["diff"], line["low"], line["high"], True),
                     fmt_p(line["p_value"], line["p_floor"]), _grades(line)])
        flagged.append(bool(_flags(line)))
    columns = ["ε", f"{spec.a} worst case", f"{spec.a}: strongest single attack", f"{spec.b} worst case",
               f"{spec.b}: strongest single attack", f"{spec.a} − {spec.b} (points)", "p", "masking grade"]
    section.add(Table(columns, rows, flagged, numeric={"ε", columns[1], columns[3], columns[5], "p"},
                      caption="worst-case robust accuracy (%) per image over every attack and logit view, 95 % "
                              "interval; A − B paired over the same images (bootstrap interval; exact McNemar "
                              "p for one seed)"))
    section.add(Figure("findings-robust-vs-eps", robust_vs_eps_figure(head.run, [spec.a, spec.b]),
                       "robust accuracy (all test images) vs ε per attack, at its strongest logit view per ε; "
                       "black: worst case per image; bars: 95 % intervals", wide=True))
    section.add(attack_table(spec, head))
    return section


def _coverage(line) -> str:
    """What a paired interval covers: the images only with one seed; with several, the seeds too."""
    if line["test"] == MCNEMAR:
        return "; one trained pair: the interval covers the image sampling only, not training"
    spread = ""
    if line["t_low"] == line["t_low"]:
        spread = (f"; a bootstrap over {line['seeds']} seeds understates their spread: a paired t over the seeds "
                  f"(training only, on these images) gives "
                  f"{with_interval(line['diff'], line['t_low'], line['t_high'], True)}")
    return (f"; {line['seeds']} seeds: the interval covers training and image sampling "
            f"({100 * line['seed_share']:.0f} % of its variance from the seeds){spread}")


def attack_table(spec: Spec, head: Headline) -> Table:
    lines = head.paired[(head.paired["attack"] != CLEAN)].sort_values(["eps", "attack", "defense"], kind="stable")
    cc = _clean_correct(head.run)
    rows, flagged = [], []
    for line in lines.itertuples(index=False):
        # highlighted when a check found something, not when the grade only says "none found"
        flagged.append(bool(getattr(line, "flag_a", "") or getattr(line, "flag_b", "")))
        rows.append([f"{line.eps:g}", line.attack, line.defense,
                     with_interval(line.acc_a, line.acc_a_low, line.acc_a_high),
                     with_interval(line.acc_b, line.acc_b_low, line.acc_b_high),
                     with_interval(line.diff, line.low, line.high, True), fmt_p(line.p_value, line.p_floor),
                     pct(cc.get((spec.a, line.eps, line.attack, line.defense), float("nan"))),
                     pct(cc.get((spec.b, line.eps, line.attack, line.defense), float("nan"))),
                     _grades(line)])
    columns = ["ε", "attack", "logit view", spec.a, spec.b, f"{spec.a} − {spec.b} (points)", "p",
               f"{spec.a} among clean-correct", f"{spec.b} among clean-correct", "masking grade"]
    several = "" if head.paired["test"].eq(MCNEMAR).all() else (
        " (with several seeds: each net's mean over the seeds both nets have, its interval the t over those seeds "
        "widened to at least the images' Wilson interval)")
    return Table(columns, rows, flagged, numeric={"ε", spec.a, spec.b, columns[5], "p", columns[7], columns[8]},
                 caption="every attack and logit view: robust accuracy (%) over all test images with its 95 % "
                         f"interval{several}, the paired difference, and the thesis's denominator (robust "
                         "among the images the clean net gets right)", collapsed=True)


def _wilson(accuracy: float, n: int) -> tuple[float, float]:
    from harness.results.stats import accuracy_interval

    return accuracy_interval(float(accuracy), int(n))


def _clean_correct(run: Run) -> dict[tuple, float]:
    """(model, eps, attack, defense shown by compare) -> robust_acc_cc (one seed: the run's own value)."""
    ok = run.ok[run.ok["eps"] > 0]
    return {(r.model, float(r.eps), r.attack, r.defense): float(r.robust_acc_cc) for r in ok.itertuples(index=False)
            if r.seed == ok["seed"].min()}


# -- how much of the thesis's figure survives ----------------------------------------------------
def survival_rows(spec: Spec, head: Headline) -> list[dict]:
    """At the thesis's eps, among clean-correct images: the thesis's text, its PGD-40 rerun under this
    protocol (thesis run, then headline run) and each stronger attack of the headline run at its
    strongest logit view, weakest first after the thesis's own."""
    ra, rb = ref.reference("pgd40_eps0.15", spec.a), ref.reference("pgd40_eps0.15", spec.b)
    rows = []
    if ra is not None and rb is not None:
        rows.append({"source": "thesis text", "attack": "PGD-40", "a": ra.value, "b": rb.value, "n": (None, None),
                     "grade": ""})
    runs = ([("thesis", spec.thesis)] if spec.thesis is not None and spec.thesis.directory != spec.headline.directory
            else []) + [("headline", spec.headline)]
    for role, run_ref in runs:
        run = head.run if role == "headline" else load_run(run_ref.directory)
        ok = run.ok[(run.ok["eps"].sub(ref.PGD_EPS).abs() < 1e-9) & run.ok["model"].isin([spec.a, spec.b])]
        if ok.empty:
            continue
        where = f"{_rel(run_ref.directory)}, {int(ok['n'].max())} images"
        pgd = ok[(ok["attack_name"] == "pgd") & (ok["T"].sub(ref.PGD_T).abs() < 1) &
                 ok["attack_params"].str.contains(f'"steps": {ref.PGD_STEPS}')]
        rows += _survival_lines(pgd, spec, where, "PGD-40 (T = 1e5)")
        if role == "headline":
            others = []
            for attack, rows_of in ok[ok["attack_name"] != "pgd"].groupby("attack"):
                name = "worst case (every attack)" if attack == WORST else attack
                others += _survival_lines(rows_of, spec, where, name)
            # weakest attack first, the worst case last
            rows += sorted(others, key=lambda r: (r["attack"].startswith("worst case"), -r["a"]))
    return rows


def _survival_lines(rows: pd.DataFrame, spec: Spec, where: str, name: str) -> list[dict]:
    """One line: A and B under ``rows``' attack at its strongest view, of the run's first seed (named when the
    run has several: the thesis's figure is one training too)."""
    seed = rows["seed"].min() if len(rows) else 0
    if rows["seed"].nunique() > 1:
        where += f", seed {seed} of {rows['seed'].nunique()}"
    a = rows[(rows["model"] == spec.a) & (rows["seed"] == seed)].sort_values("robust_acc_cc", kind="stable")
    b = rows[(rows["model"] == spec.b) & (rows["seed"] == seed)].sort_values("robust_acc_cc", kind="stable")
    if a.empty or b.empty:
        return []
    la, lb = a.iloc[0], b.iloc[0]
    correct = (round(la["clean_acc"] * la["n"]), round(lb["clean_acc"] * lb["n"]))
    # each model at its own strongest logit view: both named when they differ
    view = ("" if name.startswith("worst") or name.startswith("PGD") else f" ({la['defense']})"
            if la["defense"] == lb["defense"] else f" ({spec.a} {la['defense']}, {spec.b} {lb['defense']})")
    grade = "; ".join(f"{k}: {v}" for k, v in ((spec.a, _grade(la)), (spec.b, _grade(lb))) if v)
    return [{"source": where, "attack": name + view, "a": float(la["robust_acc_cc"]), "b": float(lb["robust_acc_cc"]),
             "n": correct, "grade": grade}]


def _grade(row: pd.Series) -> str:
    return "; ".join(g for g, column in (("meaningless", "meaningless"), ("upper bound", "upper_bound"))
                     if str(row.get(column, "") or ""))


def survival_section(spec: Spec, head: Headline) -> Section:
    section = Section("survival", f"How much of the thesis's PGD-40 figure survives (ε = {ref.PGD_EPS:g})",
                      short="Thesis figure")
    rows = survival_rows(spec, head)
    if not any(row["source"] != "thesis text" for row in rows):
        return section.add(Text(f"no rows at ε = {ref.PGD_EPS:g} for {spec.a} and {spec.b}", "missing"))
    table = []
    for row in rows:
        ca, cb = row["n"]
        cells = [row["source"], row["attack"]]
        for value, count in ((row["a"], ca), (row["b"], cb)):
            cells.append(with_interval(value, *_wilson(value, count)) if count else pct(value))
        table.append(cells + [row["grade"]])
    section.add(Table(["where", "attack", spec.a, spec.b, "masking grade"], table, [bool(r[-1]) for r in table],
                      numeric={spec.a, spec.b},
                      caption="robust accuracy (%) among the test images the clean net classifies correctly (the "
                              "thesis's denominator, appendix A), 95 % Wilson interval over those images; the "
                              "thesis gives its figure without an interval (§3.2, all 10 000 test images)"))
    if spec.thesis is not None:
        section.add(Text(f"Thesis protocol: suite `{spec.thesis.suite}`, reproduce with `{run_command(spec.thesis)}`.",
                         "note"))
    return section


# -- logit views -----------------------------------------------------------------------------------
def views_section(spec: Spec, head: Headline) -> Section:
    section = Section("views", "Logit views: masking and the choice of T", short="Logit views")
    ok = head.run.ok[(head.run.ok["attack"] != WORST) & head.run.ok["model"].isin([spec.a, spec.b])]
    eps = ref.PGD_EPS if (ok["eps"].sub(ref.PGD_EPS).abs() < 1e-9).any() else max(spec.eps)
    at = ok[ok["eps"].sub(eps).abs() < 1e-9]
    attacks = sorted(set(at["attack"]))
    rows = []
    for defense, group in at.groupby("defense", sort=False):
        temperatures = [group.loc[group["model"] == model, "T"] for model in (spec.a, spec.b)]
        shown = [fmt_T(float(t.iloc[0])) if len(t) else "–" for t in temperatures]
        t = float(group["T"].min())
        cells = [defense, shown[0] if shown[0] == shown[1] else " / ".join(shown)]
        n = int(group["n"].max())
        for model in (spec.a, spec.b):
            share = float(group.loc[group["model"] == model, "zero_grad_share"].max())
            cells.append(with_interval(share, *_wilson(share, n)) if share == share else "–")
        for attack in attacks:
            for model in (spec.a, spec.b):
                value = group.loc[(group["model"] == model) & (group["attack"] == attack), "robust_acc"]
                cells.append(with_interval(value.mean(), *_wilson(value.mean(), n)) if len(value) else "–")
        rows.append((defense.endswith("auto"), t if t == t else float("inf"), cells))
    rows = [cells for *_, cells in sorted(rows, key=lambda r: r[:2])]
    columns = ["logit view", f"T ({spec.a} / {spec.b} when they differ)", f"{spec.a} zero-gradient share",
               f"{spec.b} zero-gradient share"]
    columns += [f"{attack}: {model}" for attack in attacks for model in (spec.a, spec.b)]
    section.add(Table(columns, rows, numeric=set(columns[2:]),
                      caption=f"share of test images whose input gradient is exactly zero (%), and robust accuracy "
                              f"(%) of each attack at ε = {eps:g} through each logit view (logits divided by T; "
                              "\"auto\": the T the harness picks per model, docs/diagnostics.md); 95 % Wilson "
                              "intervals over the images"
                              + ("" if at["seed"].nunique() < 2 else
                                 f"; with {at['seed'].nunique()} seeds, accuracy is their mean (the intervals "
                                 "cover the images, not training) and the zero-gradient share their largest")))
    return section


# -- the page ----------------------------------------------------------------------------------------
def reproduce_section(spec: Spec, command: str) -> Section:
    section = Section("reproduce", "Reproduce and check", short="Reproduce")
    runs = [("headline", spec.headline)] + ([("clean accuracy, whole test split", spec.clean)] if spec.clean else []) + (
        [("thesis protocol", spec.thesis)] if spec.thesis else []) + (
        [("sweep", spec.sweep.run)] if spec.sweep else []) + ([("why", spec.why.sweep.run)] if spec.why else []) + (
        [("field", spec.field.run)] if spec.field else [])
    rows = [[role, f"`{run.suite}`", f"`{_rel(run.directory)}`", f"`{run_command(run)}`"] for role, run in runs]
    section.add(Table(["part", "suite", "committed tables", "command (resumes an interrupted run)"], rows,
                      caption="each part of this page, its suite and the command that reproduces its tables"))
    section.add(Text(f"This page: `{command}`, from the committed `results.csv` and per-image outcomes "
                     "(`examples/`) only; no model weights are needed. To check it against your own run, "
                     "run the suite into another folder and point a copy of the findings file at it; "
                     "`harness compare RUN MODEL_A MODEL_B` pairs two models of any run, and `harness "
                     "compare RUN bio bp --against OTHER_RUN` pairs across runs on the same images."))
    return section


def build(spec: Spec, resamples: int = RESAMPLES, command: str = "") -> Document:
    head = headline_data(spec, resamples)
    sweep = sweep_data(spec.sweep, spec.eps, resamples, spec.path) if spec.sweep is not None else None
    sections = [answer_section(spec, head, sweep), headline_section(spec, head), survival_section(spec, head)]
    claims = claims_section(spec, head)
    sections += ([claims] if claims is not None else []) + [views_section(spec, head)]
    if sweep is not None:
        figure = sweep_figure(sweep.points, sweep.reference, spec.sweep.reference)
        sections.append(sweep_section(sweep, spec.a, run_command(spec.sweep.run), spec.sweep.run.suite, figure))
    if spec.why is not None and not (spec.why.sweep.run.directory / "results.csv").is_file():
        sections.append(why_pending_section(spec.why, spec.a, run_command(spec.why.sweep.run), spec.path))
    elif spec.why is not None:
        why = why_data(spec.why, spec.eps, spec.a, resamples, spec.path)
        run = spec.why.sweep.run
        figure = sweep_figure(why.sweep.points, why.sweep.reference, spec.why.sweep.reference)
        sections.append(why_section(why, spec.a, run_command(run), run.suite, figure))
    if spec.field is not None:
        sections.append(field_section(field_data(spec.field, resamples, spec.path), run_command(spec.field.run)))
    sections.append(reproduce_section(spec, command or f"harness findings {_rel(spec.path)}"))
    meta = [("findings file", f"`{_rel(spec.path)}`"), ("question", f"is `{spec.a}` more robust than `{spec.b}`?"),
            ("intervals", f"95 %; bootstrap and permutation resamples: {resamples}")]
    return Document("Findings: is a Hebbian first layer more robust than backprop?",
                    "Written by `harness findings` from committed result tables; do not edit by hand.", meta,
                    sections)


def write_findings(path: Path | str, resamples: int = RESAMPLES, out: Path | None = None) -> tuple[Path, int]:
    """Write the page and its figures where the findings file says (``out``: the page there instead,
    its figures in ``img`` next to it); returns (page, figures)."""
    import dataclasses

    from harness.kit.atomic import replace_atomically

    spec = read_spec(path)
    if out is not None:
        out = Path(out).absolute()
        spec = dataclasses.replace(spec, out=out, images=out.parent / "img")
    document = build(spec, resamples)
    try:
        spec.out.parent.mkdir(parents=True, exist_ok=True)
        spec.images.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = "--out" if out is not None else "findings.out / findings.images"
        raise HarnessError(f"{spec.path}: {where}: cannot create the folder ({exc.strerror or exc})") from None
    link = Path(os.path.relpath(spec.images, spec.out.parent))
    body = to_markdown(document, spec.images, link)
    replace_atomically(spec.out, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
    return spec.out, sum(isinstance(b, Figure) for s in document.sections for b in s.blocks)

