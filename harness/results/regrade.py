"""Re-run the masking checks of finished runs with the checks of the installed harness:

    python -m harness.results.regrade RUN_DIR [RUN_DIR ...]

The checks (harness/results/diagnostics.py) read only the results table and the per-image outcomes under
``OUT/examples``, so a run graded by an older harness can be graded again without training or
attacking anything: every row's numbers stay as they are; the check columns, the grades and the
worst-case rows are recomputed, and the table is rewritten atomically. Prints, per run, how many
rows' grades changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.results import diagnostics
from harness.results.rundir import RunDir
from harness.results.table import read_results, write_csv


def regrade(directory: Path) -> int:
    """Regrade one run directory in place; returns the number of rows whose grade text changed."""
    before = read_results(directory)
    rows = before[before["attack"] != diagnostics.WORST]
    after = diagnostics.annotate(rows, RunDir(directory))
    write_csv(after, directory / "results.csv")
    after = read_results(directory)
    key = ["config_hash"]
    old = before.set_index(key)["reasons"]
    new = after.set_index(key)["reasons"]
    common = old.index.intersection(new.index)
    return int((old[common] != new[common]).sum()) + abs(len(new) - len(old))


def main(argv: list[str] | None = None) -> int:
    directories = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not directories:
        print("usage: python -m harness.results.regrade RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    try:
        for directory in directories:
            changed = regrade(directory)
            print(f"{directory}: regraded, {changed} row(s) changed")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
