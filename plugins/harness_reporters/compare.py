"""``harness compare RUN A B``: two models on the same test images, paired (plugins/harness_reporters/paired.py)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.results.stats import LEVEL, MCNEMAR, RESAMPLES, TWO_LEVEL


@click.command("compare")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("model_a")
@click.argument("model_b")
@click.option("--against", type=click.Path(path_type=Path), default=None,
              help="Take MODEL_B from this run instead (same dataset and test images, e.g. another seed set).")
@click.option("--defense", "defenses", multiple=True,
              help="Only lines through this defense key (repeatable); worst cases pooling it stay, over their "
                   "whole pool.")
@click.option("--resamples", type=click.IntRange(min=100), default=RESAMPLES, show_default=True,
              help="Bootstrap resamples of the images, and sign patterns of the permutation test (several "
                   "seeds).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap and of the permutation test.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the lines as CSV (fractions, as in results.csv).")
def compare_command(run_dir: Path, model_a: str, model_b: str, against: Path | None, defenses: tuple[str, ...],
                    resamples: int, seed: int, csv_out: Path | None) -> None:
    """Compare MODEL_A and MODEL_B of RUN_DIR image by image: per eps and attack (worst case included),
    both robust accuracies, A - B with a paired 95 % interval and p-value: with one seed, a bootstrap
    over the images and exact McNemar (image sampling only); with several, a two-level bootstrap over
    the seeds and the images (the trainings' spread included).

    MODEL_A and MODEL_B are model keys of the run's suite (its [models.KEY] tables: the model column
    of RUN_DIR/results.csv), e.g. bio and bp."""
    from harness.kit.atomic import replace_atomically
    from harness_reporters.paired import compare

    frame = compare(run_dir, model_a, model_b, against, defenses, LEVEL, resamples, seed)
    label_b = model_b if against is None else f"{against.name}:{model_b}"
    print_comparison(frame, model_a, label_b)
    if csv_out is not None:
        replace_atomically(csv_out, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g",
                                                            lineterminator="\n"))
        click.echo(f"{len(frame)} line(s): {csv_out}", err=True)


def print_comparison(frame, label_a: str, label_b: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from harness.results.stats import fmt_p

    console = Console(width=max(170, Console().width))
    for dataset, group in frame.groupby("dataset", sort=False):
        norms = sorted({n for n in group["norm"] if n})
        table = Table(title=f"{dataset}: {label_a} vs {label_b}, accuracy (%) on the same images "
                            "(eps 0: clean accuracy)", title_justify="left")
        spread = group["t_low"].notna().any()  # several seeds: the paired t over them beside the bootstrap
        columns = ["eps"] + (["norm"] if len(norms) > 1 else []) + [
            "attack", "defense", label_a, label_b, f"{label_a} − {label_b} (points)", "95 % interval", "p", "test"] + (
            ["t over seeds"] if spread else []) + [f"{label_a} only / {label_b} only", "images × seeds", "flags"]
        for column in columns:
            table.add_column(escape(column), justify="left" if column in ("norm", "attack", "defense", "flags")
                             else "right", no_wrap=column not in ("attack", "defense", "flags"))
        for line in group.itertuples(index=False):
            cells = [f"{line.eps:g}"] + ([line.norm] if len(norms) > 1 else []) + [
                line.attack, line.defense, f"{100 * line.acc_a:.1f}", f"{100 * line.acc_b:.1f}",
                f"{100 * line.diff:+.1f}", f"[{100 * line.low:+.1f}, {100 * line.high:+.1f}]", fmt_p(line.p_value, line.p_floor),
                TESTS.get(line.test, line.test)] + ([
                    "–" if line.t_low != line.t_low else f"[{100 * line.t_low:+.1f}, {100 * line.t_high:+.1f}]"]
                    if spread else []) + [f"{line.only_a} / {line.only_b}", f"{line.images} × {line.seeds}",
                                          _flags(line, label_a, label_b)]
            table.add_row(*map(escape, cells))
        console.print(table)
    console.print("interval: paired bootstrap over the images (each image keeps its outcomes under every seed); "
                  "p: the image is the unit of the test, "
                  + "; ".join(NOTES[t] for t in TESTS if t in set(frame["test"])),
                  highlight=False, markup=False, soft_wrap=True)
    unpaired = sorted(set(frame["unpaired"]) - {""})
    if unpaired:
        console.print(f"seeds left out, without a partner on the other side: {' | '.join(unpaired)}",
                      highlight=False, markup=False, soft_wrap=True)
    if (frame["flag_a"] != "").any() or (frame["flag_b"] != "").any():
        console.print("flags: masking grades of the rows behind a line (`harness results RUN` says why); a "
                      "meaningless number compares blindness, not robustness", highlight=False, markup=False,
                      soft_wrap=True)


TESTS = {MCNEMAR: "McNemar", TWO_LEVEL: "two-level"}  # the test column's short names
NOTES = {MCNEMAR: "McNemar: exact McNemar test on the images exactly one model gets right (one seed); "
                  "interval and p cover the image sampling only",
         TWO_LEVEL: "two-level: bootstrap resampling seeds, then images (the same draw for every seed), of each "
                    "seed's per-image A − B; interval and p include the seed-to-seed spread of the trainings; "
                    "p >= 2 / (resamples + 1), printed as a bound there; t over seeds: Student t of the per-seed "
                    "differences (the training spread on these images), the check beside a bootstrap over few "
                    "seeds, which understates their spread"}


def _flags(line, label_a: str, label_b: str) -> str:
    return "; ".join(f"{label}: {flag}" for label, flag in ((label_a, line.flag_a), (label_b, line.flag_b)) if flag)
