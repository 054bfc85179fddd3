"""Runs that survive: SIGKILL then rerun, Ctrl-C (SIGINT) then rerun, determinism, OUT/run.json.

Every run is a real `harness run` subprocess on a tiny suite (one 32-unit net, 1 000 MNIST training
and 200 test images, 10 cells), each pinned to one thread (OMP_NUM_THREADS=1)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import OWN_PLUGINS
from harness.errors import HarnessError
from harness.results.table import TIMING_COLUMNS, read_results
from harness.suite.tomlwrite import to_toml
from suite_builder import changed, one_net, torchattacks

pytestmark = pytest.mark.slow  # real runs in subprocesses, killed and resumed

SUITE = changed(one_net(name="resume", test_size=200, epochs=2, convergence_images=50,
                        attacks={"pgd": torchattacks("pgd", steps=100), "fgsm": torchattacks("fgsm")},
                        eps=(0.0, 0.05, 0.1)),
                {"grid.exclude": [{"attack": "fgsm", "eps": 0.0}]})
CELLS = 10  # 2 defenses x 2 attacks x 3 eps, minus fgsm at eps 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("resume")
    (directory / "resume.toml").write_text(to_toml(SUITE))
    return directory


@pytest.fixture(scope="module")
def env(mnist_root) -> dict[str, str]:
    return {**os.environ, "HARNESS_DATA": str(mnist_root), "HARNESS_LOAD_PLUGINS": ",".join(OWN_PLUGINS),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(workdir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", str(workdir / "resume.toml"), "--out", str(out),
            "--device", "cpu", "--quiet"]


def run_to_end(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def partial_rows(out: Path) -> int:
    try:
        return len(read_results(out))
    except HarnessError:  # not written yet
        return 0


def start_and_signal(args: list[str], env: dict[str, str], out: Path, signum: int) -> tuple[subprocess.Popen, int]:
    """Start a run and send ``signum`` as soon as results.csv holds some but not all cells.
    Returns the process and the number of rows seen just before the signal."""
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            seen = partial_rows(out)
            if 1 <= seen < CELLS:
                process.send_signal(signum)
                return process, seen
            if process.poll() is not None:
                pytest.fail(f"the run ended (rc {process.returncode}) before it could be interrupted mid-grid; "
                            f"{seen} rows\n{process.stderr.read()[-3000:]}")
            time.sleep(0.01)
        pytest.fail("no partial results.csv within 240 s")
    except BaseException:
        process.kill()
        process.wait()
        raise


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=TIMING_COLUMNS).sort_values("config_hash").reset_index(drop=True)


def temporaries(out: Path) -> list[Path]:
    return [p for d in (out, out / "models", out / "examples") if d.is_dir()
            for p in d.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def reference(workdir, env) -> Path:
    """One uninterrupted run."""
    out = workdir / "reference"
    run_to_end(command(workdir, out), env)
    return out


def test_sigkill_then_rerun_equals_an_uninterrupted_run(workdir, env, reference):
    out = workdir / "killed"
    args = command(workdir, out)
    process, _ = start_and_signal(args, env, out, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    partial = read_results(out)  # what the kill left is a valid table
    assert 1 <= len(partial) < CELLS
    assert partial["config_hash"].is_unique
    # stale temporaries of a kill in mid-write are cleaned up by the rerun
    (out / ".results.csv-k1ll3d00").write_text("half a table")
    (out / "models").mkdir(exist_ok=True)
    (out / "models" / ".bp-seed0-0123456789ab.safetensors-abcd_123").write_bytes(b"\0")

    run_to_end(args, env)

    final, expected = read_results(out), read_results(reference)
    assert final["config_hash"].is_unique
    assert set(final["config_hash"]) == set(expected["config_hash"])
    assert set(partial["config_hash"]) <= set(final["config_hash"])
    pd.testing.assert_frame_equal(comparable(final), comparable(expected))
    assert temporaries(out) == []
    runs = json.loads((out / "run.json").read_text())["runs"]
    assert [r["cells_todo"] for r in runs] == [CELLS, CELLS - int((partial["status"] == "ok").sum())]


def test_same_seed_twice_gives_identical_results(workdir, env, reference):
    out = workdir / "again"
    run_to_end(command(workdir, out), env)
    first = read_results(reference).drop(columns=TIMING_COLUMNS).to_csv(index=False)
    second = read_results(out).drop(columns=TIMING_COLUMNS).to_csv(index=False)
    assert first == second


def test_sigint_stops_after_the_current_cell_and_the_printed_command_resumes(workdir, env, reference):
    out = workdir / "interrupted"
    process, seen = start_and_signal(command(workdir, out), env, out, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "to resume" in lines[0], stderr[-3000:]
    annotated = read_results(out)
    table = annotated[annotated["attack"] != "worst-case"]
    assert seen <= len(table) < CELLS  # the cell in progress was finished, then the run stopped
    assert f"{len(table)} of {CELLS} cells done" in lines[0]
    # the finished cells carry their masking checks and worst cases, so the partial table can be read
    # by the leaderboard, compare and findings; the resumed run recomputes them over every cell
    assert (annotated["attack"] == "worst-case").any()
    assert (table["status"] == "ok").all() and table["config_hash"].is_unique
    assert table[["n", "clean_acc", "robust_acc", "eps", "seed"]].notna().all().all()
    assert (table["config_hash"] != "").all() and (table["model_hash"] != "").all()
    assert temporaries(out) == []

    resume = shlex.split(lines[0].split("run: ", 1)[1])  # the exact command it printed
    assert resume[:2] == ["harness", "run"]
    run_to_end([sys.executable, "-m", "harness.cli"] + resume[1:], env)
    pd.testing.assert_frame_equal(comparable(read_results(out)), comparable(read_results(reference)))


def test_run_json_records_what_produced_the_directory(workdir, reference, mnist_root):
    import torch

    from harness.plugins import load_registry
    from harness.run.runner import Runner
    from harness.suite.load import load_suite

    suite_file = workdir / "resume.toml"
    record = json.loads((reference / "run.json").read_text())
    # relative, so the record reads the same on another machine: to the run directory or the working directory
    path, base = Path(record["suite"]["path"]), {"run directory": reference, "working directory": Path.cwd()}
    assert not path.is_absolute() and (base[record["suite"]["relative_to"]] / path).resolve() == suite_file.resolve()
    assert record["suite"]["sha256"] == hashlib.sha256(suite_file.read_bytes()).hexdigest()
    assert (reference / "suite.toml").read_bytes() == suite_file.read_bytes()
    cells = read_results(reference)
    cells = cells[cells["attack"] != "worst-case"]
    assert len(record["cells"]) == CELLS
    assert {c["config_hash"] for c in record["cells"]} == set(cells["config_hash"])
    assert {"dataset", "model", "defense", "attack", "eps", "seed"} <= set(record["cells"][0])
    assert {"harness", "torch", "torchattacks", "adversarial-robustness-toolbox", "numpy"} <= set(record["versions"])
    assert record["device"] == "cpu"
    assert len(record["runs"]) == 1 and record["runs"][0]["cells_todo"] == CELLS

    # a rerun appends to the history instead of overwriting it
    torch.set_num_threads(1)
    out = workdir / "rerun"
    shutil.copytree(reference, out)
    registry = load_registry()
    Runner(load_suite(suite_file, registry), registry, out, mnist_root, torch.device("cpu")).run()
    again = json.loads((out / "run.json").read_text())
    assert again["runs"][0] == record["runs"][0]
    assert len(again["runs"]) == 2 and again["runs"][1]["cells_todo"] == 0 and again["runs"][1]["todo"] == []
    assert again["cells"] == record["cells"]
    assert temporaries(out) == []
