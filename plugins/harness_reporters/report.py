"""``harness report RUN_DIR``: one self-contained HTML page (``report.html``: CSS inline, figures as
base64 PNG, nothing fetched) and its Markdown twin (``report.md`` with the PNGs next to it).

What it shows, in this order, each part only where the run holds the data for it (else one line
saying what is missing): the suite and environment (``run.json``, ``suite.toml``, ``results.csv``);
every number the thesis reports next to this run's, then Bio vs BP paired on the same images; the
thesis's qualitative claims marked agree, disagree or n/a; clean, test and train accuracy per model
(model sidecars); the thesis's figures 2.1 (hidden units), 2.2 (accuracy per epoch), 3.1
(zero-gradient share vs T, from the rows) and 3.2 (robust accuracy vs eps, worst case included); the
masking checks with their reasons; and Figure 3.3 (adversarial examples, re-attacking test images
the run recorded as fooled).

The sections live in ``report_tables`` (suite, accuracy, masking checks), ``report_thesis`` (with
``report_compare``), ``report_claims``, ``report_figures`` (figures 2.1 to 3.2) and ``report_gallery``
(3.3); the run on disk in ``report_run``.
Models are matched to the thesis's nets by their suite keys ``bio`` and ``bp`` (harness_reporters.reference).
"""


from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError
from harness.results.table import RESULTS_FILE
from harness_reporters.document import Document, Figure, to_html, to_markdown
from harness_reporters.report_claims import claims_section
from harness_reporters.report_figures import curves_section, features_section, gradients_section, robust_section
from harness_reporters.report_gallery import gallery_section
from harness_reporters.report_run import Run, check_run_dir, load_run
from harness_reporters.report_tables import accuracy_section, checks_section, environment_section
from harness_reporters.report_thesis import thesis_section

__all__ = ["Written", "build", "check_run_dir", "load_run", "write_report"]


def build(run: Run, root: Path | None, device="cpu") -> Document:
    meta = [("run", str(run.directory)), ("date", run.date() or "– (no run.json)"),
            ("rows", f"{len(run.frame)} in {RESULTS_FILE}")]
    sections = [environment_section(run), thesis_section(run), claims_section(run), accuracy_section(run),
                features_section(run), curves_section(run), gradients_section(run), robust_section(run),
                checks_section(run), gallery_section(run, root, device)]
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
    from harness.kit.atomic import replace_atomically

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
