"""Two suites at once on one machine: no collapse from oversubscribed math threads.

Runs one suite alone, then N copies of it at the same time (each its own output directory, no model
cache, so each trains), and compares wall time and total CPU time (user + system, from the OS's
accounting of each child):

    wall(N together) / (N x wall(one))  goal <= 1.15 (at worst the copies take turns: N x one run)
    CPU(N together) / (N x CPU(one))    goal <= 1.3

Before harness/kit/threads.py set OpenMP's wait policy, two quick suites on 2 cores took 13x the CPU time
of one. Run it on an otherwise idle machine (it exits 1 when a goal is missed):

    python bench/concurrency.py [--suite suites/quick.toml] [--copies 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# per copy: 2 copies on 2 cores within 2.3 x one run's wall time, 15 % over taking turns
GOALS = {"wall": 1.15, "cpu": 1.3}


def run_together(suite: Path, copies: int, root: Path) -> tuple[float, float]:
    """Wall seconds until all copies ended, and their summed CPU seconds."""
    command = [str(Path(sys.executable).parent / "harness"), "run", str(suite), "--no-cache", "--quiet"]
    start = time.perf_counter()
    children, logs = [], []
    for i in range(copies):
        # stderr to a file, not a pipe: a pipe nobody reads until the child ends blocks it when full
        logs.append(open(root / f"{copies}-{i}.stderr", "w+b"))
        children.append(subprocess.Popen(command + ["--out", str(root / f"{copies}-{i}")],
                                         stdout=subprocess.DEVNULL, stderr=logs[-1]))
    cpu, failed = 0.0, []
    for child, log in zip(children, logs):
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if child.returncode not in (0, 1):  # 1: the run finished with failed cells
            log.seek(0)
            failed.append(log.read().decode(errors="replace").strip().splitlines()[-1:])
        log.close()
    if failed:
        raise SystemExit(f"a run failed: {failed}")
    return time.perf_counter() - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path(__file__).parent.parent / "suites" / "quick.toml")
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    if args.copies < 2:
        parser.error(f"--copies {args.copies}: expected 2 or more (copies run at the same time)")
    from gemm_floor import cpu_name  # bench/gemm_floor.py, beside this script

    with tempfile.TemporaryDirectory(prefix="harness-concurrency-") as tmp:
        root = Path(tmp)
        wall_one, cpu_one = run_together(args.suite, 1, root)
        wall_all, cpu_all = run_together(args.suite, args.copies, root)
    ratios = {"wall": wall_all / (args.copies * wall_one), "cpu": cpu_all / (args.copies * cpu_one)}
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores; suite {args.suite}")
    print(f"one run             : wall {wall_one:6.1f} s, CPU {cpu_one:6.1f} s")
    print(f"{args.copies} runs together    : wall {wall_all:6.1f} s, CPU {cpu_all:6.1f} s")
    print(f"wall / (copies x one) {ratios['wall']:.2f} (goal <= {GOALS['wall']}), "
          f"CPU / (copies x one) {ratios['cpu']:.2f} (goal <= {GOALS['cpu']})")
    if any(ratios[key] > GOALS[key] for key in GOALS):
        sys.exit(1)


if __name__ == "__main__":
    main()
