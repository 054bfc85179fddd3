"""Built-in reporters: ``harness report`` (an HTML page and its Markdown twin with the thesis's
figures and a "thesis vs this run" table), ``harness leaderboard`` (runs merged into one line per
model x threat model x eps), ``harness compare`` (two models, image by image) and ``harness findings``
(the findings page, from the committed runs a findings file names). They read finished
run directories only, and reach the command line through ``harness_register_commands``, the hook a
third-party reporter would use.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness import hookimpl
from harness.errors import HarnessError
from harness.kit.cli_options import data_dir_option, data_root


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for report.html, report.md and its PNGs (default: RUN_DIR/report).")
@click.option("--gallery/--no-gallery", default=True, show_default=True,
              help="Figure 3.3: re-attack a few test images the run recorded as fooled (reads the dataset).")
@data_dir_option
@click.option("--device", default="cpu", show_default=True, help="Device for the gallery's attacks: cpu, cuda, auto.")
def report_command(run_dir: Path, out: Path | None, gallery: bool, data_dir: str | None, device: str) -> None:
    """Write an HTML report (self-contained) and its Markdown twin for the run in RUN_DIR."""
    from harness_reporters.report import check_run_dir, write_report

    check_run_dir(run_dir)  # before the data root, so a wrong RUN_DIR is the error reported
    root = None
    if gallery:
        from harness.kit.device import resolve_device

        root, device = data_root(data_dir), resolve_device(device)
    written = write_report(run_dir, out, root, device)
    click.echo(f"{written.figures} figure(s)", err=True)
    click.echo(written.html)
    click.echo(written.markdown)


@click.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table as CSV (same runs, same bytes).")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as a self-contained HTML page.")
def leaderboard_command(run_dirs: tuple[Path, ...], csv_out: Path | None, markdown: bool, html_out: Path | None) -> None:
    """One line per model x dataset x threat model x eps over RUN_DIRS: worst-case robust accuracy
    over every attack, the strongest attack, and whether the masking checks flagged it."""
    from harness_reporters import leaderboard as board

    frame = board.leaderboard(list(run_dirs))
    if frame.empty:
        click.echo("no attacked cells (eps > 0) in these runs", err=True)
    if csv_out is not None:
        board.write_csv(frame, csv_out)
        click.echo(f"{len(frame)} line(s): {csv_out}", err=True)
    if html_out is not None:
        from harness.kit.atomic import replace_atomically

        page = board.to_html(frame, list(run_dirs))
        try:
            replace_atomically(html_out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
        except OSError as exc:
            raise HarnessError(f"--html {html_out}: cannot write ({exc.strerror or exc})") from None
        click.echo(f"{len(frame)} line(s): {html_out}", err=True)
    if markdown:
        click.echo(board.to_markdown(frame), nl=False)
    elif csv_out is None and not frame.empty:
        _print_leaderboard(frame)


def _print_leaderboard(frame) -> None:
    """One table per threat model, then the reasons behind each flag and what each model is, once."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from harness_reporters import leaderboard as board

    console = Console(width=max(120, Console().width))
    for (dataset, norm, eps), group in frame.groupby(["dataset", "norm", "eps"], sort=False):
        table = Table(title=f"{dataset}, {norm} eps = {eps:g}: worst-case robust accuracy (%) over every attack",
                      title_justify="left")
        for column in ("rank", "model", "defense", "suite", "run", "clean", "robust", "95 % interval",
                       "strongest attack", "attacks", "n", "seeds", "flag"):
            right = column in ("rank", "clean", "robust", "95 % interval", "attacks", "n", "seeds")
            table.add_column(column, justify="right" if right else "left",
                             style="bold" if column == "robust" else None)
        for line in group.itertuples(index=False):
            cells = [str(line.rank), line.model, line.defense, line.suite, line.run, f"{100 * line.clean_acc:.1f}",
                     f"{100 * line.robust_acc:.1f}", board.interval_text(line), line.strongest_attack,
                     str(line.attacks), str(line.n), str(line.seeds), line.flag]
            table.add_row(*map(escape, cells), style="red" if line.unreliable else None)
        console.print(table)
    for line in frame[frame["unreliable"]].itertuples(index=False):  # each line's own reasons only
        what = f"{line.run}/{line.model} ({line.defense}), {line.norm} eps = {line.eps:g}: {line.reasons}"
        console.print(f"[red]{escape(line.flag)}[/red] {escape(what)}", highlight=False)
    for (run, model), group in frame.groupby(["run", "model"]):
        line = group.iloc[0]
        console.print(f"{run}/{model}: {line['learners']}; model {line['model_hash']}; run of {line['date'] or '?'}; "
                      f"{line['versions']}", highlight=False, markup=False)


@click.command("findings")
@click.argument("findings_file", type=click.Path(dir_okay=False, path_type=Path), default="results/findings.toml",
                required=False)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the page here instead, and its figures to an img folder next to it (default: where "
                   "FINDINGS_FILE's findings.out and findings.images say: docs/findings.md and docs/img for "
                   "results/findings.toml).")
@click.option("--resamples", type=click.IntRange(min=100), default=9999, show_default=True,
              help="Bootstrap resamples of the images, and sign patterns of the permutation test.")
def findings_command(findings_file: Path, out: Path | None, resamples: int) -> None:
    """Write the findings page (docs/findings.md, or --out) from the committed runs FINDINGS_FILE names.

    FINDINGS_FILE defaults to results/findings.toml, relative to the directory harness runs in: the
    project's root. The page gives the answer in a few sentences, then its tables and figures, every
    number with its 95 % interval, suite and reproduce command. It goes where the file's findings.out
    says (docs/findings.md for the default file), or to --out. Nothing is trained or attacked."""
    from harness_reporters.findings import write_findings

    page, figures = write_findings(findings_file, resamples, out)
    click.echo(f"{figures} figure(s)", err=True)
    click.echo(page)


@hookimpl
def harness_register_commands(register):
    from harness_reporters.compare import compare_command

    register(report_command)
    register(leaderboard_command)
    register(compare_command)
    register(findings_command)
