"""The findings page's "What the field claims, on one protocol" section: each published claim that a
biologically plausible rule is more robust than backprop (source, setting, its number), beside what the field
run (suites/field.toml) measures for the same comparison: both nets' worst-case robust accuracy over every
attack and logit view, their paired difference with a two-level interval over seeds and images (one seed: over
images only, and the row says so), the claimed net's masking grades, and a verdict:

- **agrees**: the rule keeps more images than its reference (the interval excludes 0 on the rule's side),
  and no masking check flagged the rule's rows;
- **agrees only through a flagged number**: the same, but a masking check flagged the rule's rows;
- **reversed**: the reference keeps more (the interval excludes 0 on the other side);
- **not supported**: the interval includes 0 — no difference found at this budget;
- **not measured yet**: the run has no rows of one of the two nets there (the run stopped before them).

A claim's own verdict is the one its measured rows share, "mixed" when they differ."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST
from harness.results.stats import fmt_p
from harness.suite.load import read_toml
from harness_reporters.document import Section, Table, Text
from harness_reporters.findings_spec import Claim, Field
from harness_reporters.paired import compare
from harness_reporters.report_format import interval, pct
from harness_reporters.report_run import Run, load_run

AGREES, FLAGGED, REVERSED, UNSUPPORTED, MISSING, MIXED = (
    "agrees", "agrees only through a flagged number", "reversed", "not supported", "not measured yet", "mixed")
FLAGS = ("meaningless", "upper bound")   # masking grades that make a robust number untrustworthy


def verdict(low: float, high: float, flags: str) -> str:
    """The verdict of one measured line: the claimed net minus its reference, its interval and the claimed
    net's masking grades (comma-separated)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return MISSING
    if low > 0:
        return FLAGGED if any(flag in flags for flag in FLAGS) else AGREES
    if high < 0:
        return REVERSED
    return UNSUPPORTED


@dataclass
class ClaimRow:
    claim: Claim
    model: str
    reference: str
    dataset: str
    eps: float
    line: pd.Series | None   # harness compare's line (None: not measured yet)
    verdict: str


@dataclass
class FieldData:
    spec: Field
    run: Run | None      # None: the run has not written a row yet
    rows: list[ClaimRow] = field(default_factory=list)
    seeds: dict[str, int] = field(default_factory=dict)   # model -> seeds with rows

    def claim_verdict(self, claim: Claim) -> str:
        measured = {r.verdict for r in self.rows if r.claim is claim and r.verdict != MISSING}
        if not measured:
            return MISSING
        return measured.pop() if len(measured) == 1 else MIXED


def suite_models(run: Run | None, suite: Path) -> set[str] | None:
    """The models the run's suite declares (those without rows yet included); before the run exists, those of
    its suite file (None when that cannot be read either: nothing to check against)."""
    if run is not None:
        return set(run.suite.get("models", {})) or set(run.frame["model"])
    return set(read_toml(suite).get("models", {})) if suite.is_file() else None


def check_in_suite(models: set[str] | None, name: str, key: str, where, spec_path) -> None:
    """One line naming the findings file and ``key`` when model ``name`` is not among the suite's ``models``
    (:func:`suite_models`; None: nothing to check against)."""
    if models is not None and name not in models:
        raise HarnessError(f"{spec_path}: {key}: model '{name}' is not in the run's suite ({where}; models: "
                           f"{', '.join(sorted(models))})")


def field_data(spec: Field, resamples: int, spec_path) -> FieldData:
    started = (spec.run.directory / "results.csv").is_file()
    run = load_run(spec.run.directory) if started else None
    models = suite_models(run, Path(spec.run.suite))
    data = FieldData(spec, run, seeds=run.ok.groupby("model")["seed"].nunique().to_dict() if run else {})
    have = set(run.ok["model"]) if run else set()
    lines: dict[tuple[str, str], pd.DataFrame | None] = {}
    for index, claim in enumerate(spec.claims):
        for position, pair in enumerate(claim.pairs):
            for name in pair:
                check_in_suite(models, name, f"field.claims[{index}].pairs[{position}]",
                               spec.run.directory / "suite.toml" if run else spec.run.suite, spec_path)
            if pair not in lines:
                lines[pair] = (compare(run.directory, *pair, None, (), resamples=resamples)
                               if run is not None and set(pair) <= have else None)
            compared = lines[pair]
            for dataset in claim.datasets:
                for eps in claim.eps:
                    line = None
                    if compared is not None:
                        at = compared[(compared["attack"] == spec.attack) & (compared["dataset"] == dataset)
                                      & ((compared["eps"] - eps).abs() < 1e-9)]
                        if len(at):  # several pools (a rescaled net): the one that leaves the claimed net least
                            line = at.sort_values(["acc_a", "defense"]).iloc[0]
                    judged = MISSING if line is None else verdict(line["low"], line["high"], line["flag_a"])
                    data.rows.append(ClaimRow(claim, *pair, dataset, eps, line, judged))
    return data


def field_section(data: FieldData, command: str) -> Section:
    spec = data.spec
    section = Section("field", "What the field claims, on one protocol", short="The field's claims")
    about = data.run.description.rstrip(".") + ". " if data.run is not None and data.run.description else ""
    seeds = sorted(set(data.seeds.values()))
    have = (f"the run has {seeds[0] if len(seeds) == 1 else f'{seeds[0]}–{seeds[-1]}'} per net so far" if seeds
            else "no net has run yet")
    started = data.run is not None
    what = ("per-image worst case over every attack and logit view" if spec.attack == WORST
            else f"`{spec.attack}` accuracy")
    missing = f" {spec.why_missing}" if spec.why_missing and (not seeds or seeds[0] < spec.seeds) else ""
    section.add(Text(
        f"Suite `{spec.run.suite}`, committed run `{spec.run.directory.name}`"
        f"{'' if started else ' (not started yet: no row is committed)'}; {'reproduce' if started else 'run it'} "
        f"with `{command}` (it resumes where it stopped). {about}Each published claim that a rule is more robust "
        f"than backprop, beside the same comparison here: both nets' {what}, the difference with a 95 % interval (a "
        f"two-level bootstrap over seeds and images; with one seed over images only; with several, the paired t over "
        f"the seeds beside it, since a bootstrap over few seeds understates their spread), the claimed net's masking "
        f"grades, and a verdict (agrees: the interval excludes 0 on the rule's side and no check flagged it). The "
        f"suite asks for {spec.seeds} seeds per net; {have}.{missing}"))
    summary = [[c.source, c.rule, c.claim, c.setting or "–", data.claim_verdict(c)] for c in spec.claims]
    section.add(Table(["source", "rule", "published claim", "how its setting differs from this run's", "verdict here"],
                      summary, caption="each claim and the verdict its measured lines share (details below)"))
    if all(row.line is None for row in data.rows):
        section.add(Text("No pair of nets is measured yet: the line-by-line table (both nets' worst cases, the "
                         "difference and its interval, p, the masking grade, the verdict) appears with the run's "
                         "first rows.", "missing"))
        return section
    rows = []
    for row in data.rows:
        line = row.line
        if line is None:
            rows.append([row.claim.rule, f"`{row.model}` vs `{row.reference}`", row.dataset, f"{row.eps:g}", "–", "–",
                         "–", "–", "–", "–", row.verdict])
            continue
        seeds = int(line["seeds"])
        spread = interval(line["low"], line["high"], True) + ("" if seeds > 1 else " (images only)")
        if seeds > 1 and line["t_low"] == line["t_low"]:  # the paired t over the seeds beside the bootstrap
            spread += f"; t over seeds {interval(line['t_low'], line['t_high'], True)}"
        grade = line["flag_a"] or ("none found" if not line["unchecked_a"] else f"not checked: {line['unchecked_a']}")
        rows.append([row.claim.rule, f"`{row.model}` vs `{row.reference}`", row.dataset, f"{row.eps:g}", str(seeds),
                     pct(line["acc_a"]), pct(line["acc_b"]), f"{100 * line['diff']:+.1f} {spread}",
                     fmt_p(line["p_value"], line["p_floor"]), grade, row.verdict])
    section.add(Table(["rule", "nets", "dataset", "ε", "seeds", "rule's net (%)", "reference (%)",
                       "difference (points)", "p", "masking grade of the rule's net", "verdict"], rows,
                      numeric={"ε", "seeds", "rule's net (%)", "reference (%)", "p"},
                      caption="worst-case robust accuracy of each claimed net and its reference on the same images, "
                              "paired by seed and image"))
    return section
