"""The thesis section's paired comparison: Bio vs BP on the same test images (plugins/harness_reporters/paired.py), per
eps, for the worst case over every attack and for each attack through each defense."""

from __future__ import annotations

import pandas as pd

from harness.errors import HarnessError
from harness.results.diagnostics import WORST
from harness.results.stats import LEVEL, RESAMPLES, fmt_p
from harness_reporters import reference as ref
from harness_reporters.document import Table, Text
from harness_reporters.paired import CLEAN, compare_sides, load_side
from harness_reporters.report_run import Run

COLUMNS = ["ε", "attack", "defense", "Bio %", "BP %", "Bio − BP (points)", f"{100 * LEVEL:g} % interval",
           "p", "test", "Bio only / BP only", "images × seeds"]


def bio_vs_bp(run: Run) -> pd.DataFrame | str:
    """The comparison's lines on MNIST, or why there are none."""
    models = set(run.ok["model"])
    if not {"bio", "bp"} <= models:
        return "no models keyed `bio` and `bp` in this run: no paired comparison"
    try:
        frame = compare_sides(load_side(run.directory, "bio"), load_side(run.directory, "bp"))
    except HarnessError as exc:
        return f"no paired comparison: {exc}"
    frame = frame[frame["dataset"] == "mnist"]
    return frame if len(frame) else "no MNIST lines to compare"


def _row(line) -> list[str]:
    return [f"{line.eps:g}", line.attack, line.defense, f"{100 * line.acc_a:.1f}", f"{100 * line.acc_b:.1f}",
            f"{100 * line.diff:+.1f}", f"[{100 * line.low:+.1f}, {100 * line.high:+.1f}]", fmt_p(line.p_value, line.p_floor),
            line.test, f"{line.only_a} / {line.only_b}", f"{line.images} × {line.seeds}"]


def comparison_blocks(run: Run) -> list:
    """A table of the worst case per eps (and clean accuracy), the full table collapsed, and a note."""
    frame = bio_vs_bp(run)
    if isinstance(frame, str):
        return [Text(frame, "missing")]
    main = frame[frame["attack"].isin([CLEAN, WORST])]
    numeric = {"ε", "Bio %", "BP %", "Bio − BP (points)", "p"}
    blocks: list = [Text(f"{ref.MODELS['bio']} vs {ref.MODELS['bp']}, paired on the same test images "
                         "(`harness compare RUN bio bp`): is the difference more than a seed and a few images?")]
    blocks.append(Table(COLUMNS, [_row(line) for line in main.itertuples(index=False)], numeric=numeric,
                        caption="clean accuracy and worst-case robust accuracy over every attack"))
    rest = frame[~frame["attack"].isin([CLEAN, WORST])]
    if len(rest):
        blocks.append(Table(COLUMNS, [_row(line) for line in rest.itertuples(index=False)], numeric=numeric,
                            caption="each attack through each defense", collapsed=True))
    resamples = f"{RESAMPLES:,}".replace(",", " ")
    blocks.append(Text(f"Interval and p ({resamples} resamples): with one seed, a paired bootstrap over the test "
                       "images and the exact McNemar test on the images exactly one net gets right (image sampling "
                       "only); with several, a two-level bootstrap that resamples the seeds, then the images (one draw "
                       "for every seed), of each seed's per-image difference (column 'test'), so both include the "
                       "trainings' spread. A masked number (flagged meaningless in the checks below) compares blindness, "
                       "not robustness: read the worst case.", "note"))
    return blocks
