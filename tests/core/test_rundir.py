"""The run directory (harness.results.rundir): names from a suite cannot point outside it, one `harness run`
writes it at a time, and eps is a budget in the norm of the cell's attack. Runs use scikit-learn's
digits (8x8 images, nothing downloaded) and a tiny model, so each takes seconds."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import cli
from harness.errors import HarnessError, SuiteError
from harness.plugins import load_registry
from harness.results.diagnostics import WORST
from harness.results.rundir import LOCK_FILE, RunDir, check_unlocked, run_lock
from harness.results.table import TIMING_COLUMNS, read_results
from harness.run.runner import Runner, RunInterrupted
from harness.suite.load import SAFE_NAME, load_suite
from harness.testing import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HOSTILE = ["../../../evil", "..", ".", "a/b", "/etc/passwd", "a\\b", ".hidden", "x" * 101, "név", "a b",
           "a\nb", "-rf", "C:evil", "a\x00b"]


def suite_doc(model="net", defense="T1", attack="fgsm", name="safety", attack_table=None, eps=(0.1,)) -> dict:
    """A digits suite small enough to run in a test: one 16-unit net trained for one epoch."""
    return {
        "suite": {"name": name},
        "data": {"dataset": "digits", "test_size": 60},
        "models": {model: {"model": "repu", "hidden": 16, "power": 1.0, "beta": 1.0,
                           "stages": [{"learner": "backprop", "epochs": 1, "lr": 0.01, "batch_size": 50}]}},
        "defenses": {defense: {"defense": "logit-scale", "T": 1.0}},
        "attacks": {attack: attack_table or {"attack": "fgsm", "backend": "torchattacks"}},
        "grid": {"model": [model], "defense": ["none", defense], "attack": [attack], "eps": list(eps)},
    }


def write(tmp_path: Path, doc: dict, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc))
    return path


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture
def data_dir(tmp_path) -> str:
    root = tmp_path / "data"
    root.mkdir()
    return str(root)


# -- names that become paths ------------------------------------------------------------------
@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("section", ["model", "defense", "attack", "name"])
def test_hostile_names_are_rejected_by_the_loader(name, section, tmp_path, registry):
    path = write(tmp_path, suite_doc(**{section: name}))
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "unsafe" in message and "letters, digits" in message


def test_a_suite_name_from_an_unsafe_file_name_says_to_set_one(tmp_path, registry):
    doc = suite_doc()
    del doc["suite"]
    with pytest.raises(SuiteError, match=r"suite\.name: unsafe suite name 'a b' \(from the file name 'a b\.toml'; "
                                         r"set \[suite\] name\)"):
        load_suite(write(tmp_path, doc, "a b.toml"), registry)


def test_the_hostile_suite_exits_2_and_writes_nothing(tmp_path, data_dir):
    """The issue's case: a model key climbing three folders out of --out A/B/C/run."""
    suite = write(tmp_path, suite_doc(model="../../../evil"))
    before = files_under(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "A" / "B" / "C" / "run"),
                                      "--data-dir", data_dir, "--quiet", "--no-cache"])
    assert_one_line_error(result, str(suite), "models.../../../evil", "unsafe model key")
    assert files_under(tmp_path) == before
    assert not (tmp_path / "A").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=40))
def test_any_key_is_safe_or_rejected(key, tmp_path, registry):
    """Whatever a model key holds, the loader rejects it, or the model file it names stays in OUT."""
    path = write(tmp_path, suite_doc(model=key))
    try:
        suite = load_suite(path, registry)
    except SuiteError as exc:
        assert "\n" not in str(exc)
        assert not SAFE_NAME.match(key)
        return
    assert SAFE_NAME.match(key) and list(suite.models) == [key]
    out = tmp_path / "out"
    model = RunDir(out).model(key, 0, "0123456789ab")
    assert model.parent == (out / "models").resolve()
    assert model.name == f"{key}-seed0-0123456789ab.safetensors"


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/abs/x"])
def test_run_dir_paths_never_leave_the_directory(tmp_path, key):
    with pytest.raises(HarnessError, match="outside"):
        RunDir(tmp_path / "out").model(key, 0, "h")


def test_a_models_folder_linked_elsewhere_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "models").symlink_to(elsewhere)
    with pytest.raises(HarnessError, match="outside"):
        RunDir(out).model("net", 0, "h")


# -- eps per norm ------------------------------------------------------------------------------
PGD_L2 = {"attack": "pgd-l2", "backend": "torchattacks", "steps": 2, "alpha": 0.5}


def test_an_l2_budget_above_one_runs(tmp_path, data_dir):
    suite = write(tmp_path, suite_doc(attack="pgdl2", attack_table=PGD_L2, eps=(2.0,)))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--data-dir", data_dir, "--quiet",
                                      "--no-cache"])
    assert result.exit_code == 0, result.output
    from harness.results.table import read_results

    frame = read_results(out)
    attacked = frame[(frame["attack"] == "pgdl2") & (frame["status"] == "ok")]
    assert len(attacked) == 2 and set(attacked["eps"]) == {2.0} and set(attacked["norm"]) == {"l2"}
    assert (attacked["robust_acc"] <= attacked["clean_acc"]).all()


@pytest.mark.parametrize("attack, table, eps, fragment", [
    ("fgsm", None, 1.5, "eps 1.5 is above the L∞ limit 1 of attack 'fgsm' on digits"),
    ("pgdl2", PGD_L2, 8.5, "eps 8.5 is above the L2 limit 8 of attack 'pgdl2' on digits"),  # sqrt(64)
])
def test_eps_beyond_the_norms_range_is_rejected(attack, table, eps, fragment, tmp_path, registry):
    path = write(tmp_path, suite_doc(attack=attack, attack_table=table, eps=(0.1, eps)))
    with pytest.raises(SuiteError, match="grid.eps: " + fragment.replace("(", r"\(")):
        load_suite(path, registry)


def test_excluded_cells_are_not_budget_checked(tmp_path, registry):
    doc = suite_doc(eps=(0.1, 1.5))
    doc["grid"]["exclude"] = [{"eps": 1.5}]
    assert {c.eps for c in load_suite(write(tmp_path, doc), registry).cells} == {0.1}


# -- one run at a time -------------------------------------------------------------------------
LOCKER = """
import pathlib, sys, time
from harness.errors import HarnessError
from harness.results.rundir import RunDir, run_lock

out, go, release = map(pathlib.Path, sys.argv[1:4])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
try:
    with run_lock(RunDir(out)):
        print("got", flush=True)
        while not release.exists():
            time.sleep(0.01)
except HarnessError as exc:
    print("refused", exc, flush=True)
"""


def start_lockers(tmp_path: Path, out: Path, count: int) -> tuple[list[subprocess.Popen], Path]:
    """``count`` processes that each try to take ``out``'s run lock at the same moment; each prints
    "got" (then holds the lock until the returned release file exists) or "refused <error>"."""
    go, release = tmp_path / "go", tmp_path / "release"
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(out), str(go), str(release)],
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * count
    go.touch()
    return procs, release


def finish(procs: list[subprocess.Popen], release: Path) -> None:
    release.touch()
    for proc in procs:
        proc.wait(timeout=60)


def test_processes_racing_for_one_directory_get_one_lock(tmp_path):
    out = tmp_path / "out"
    procs, release = start_lockers(tmp_path, out, 4)
    try:
        answers = {proc.pid: proc.stdout.readline().strip() for proc in procs}  # each holds or gave up
        winners = [pid for pid, answer in answers.items() if answer == "got"]
        assert len(winners) == 1, answers
        for pid, answer in answers.items():
            if pid != winners[0]:  # the winner's pid, or nothing yet if it had not written it
                assert answer.startswith(f"refused {out}: another `harness run` (pid "), answer
                assert f"(pid {winners[0]}@" in answer or "(pid not yet written)" in answer, answer
        assert (out / LOCK_FILE).read_text().startswith(f"{winners[0]}@")
    finally:
        finish(procs, release)
    assert not (out / LOCK_FILE).exists()


def test_a_lock_taken_but_not_yet_written_is_held(tmp_path):
    """The moment between taking the lock and writing the pid into it: the file is empty, and the
    lock is still the holder's."""
    run_dir = RunDir(tmp_path / "out")
    run_dir.root.mkdir()
    handle = os.open(run_dir.lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(HarnessError, match=r"another `harness run` \(pid not yet written\)"):
            with run_lock(run_dir):
                pass
        with pytest.raises(HarnessError, match="another `harness run`"):
            check_unlocked(run_dir)
    finally:
        os.close(handle)
    assert run_dir.lock.read_text() == ""  # the refused run left the holder's file alone


def test_a_second_run_into_the_same_out_refuses_naming_the_first(tmp_path, data_dir):
    out = tmp_path / "out"
    procs, release = start_lockers(tmp_path, out, 1)
    try:
        assert procs[0].stdout.readline().strip() == "got"
        suite = write(tmp_path, suite_doc())
        result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--data-dir", data_dir, "--quiet",
                                          "--no-cache"])
        assert_one_line_error(result, str(out), f"another `harness run` (pid {procs[0].pid}@{socket.gethostname()})",
                              "another --out")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else written
    finally:
        finish(procs, release)


def test_a_killed_runs_lock_is_released_with_its_process(tmp_path):
    out = tmp_path / "out"
    procs, release = start_lockers(tmp_path, out, 1)
    try:
        assert procs[0].stdout.readline().strip() == "got"
        procs[0].kill()
        procs[0].wait()
        assert (out / LOCK_FILE).read_text().startswith(f"{procs[0].pid}@")  # left behind by the killed run
        check_unlocked(RunDir(out))
        with run_lock(RunDir(out)) as path:
            assert path.read_text() == f"{os.getpid()}@{socket.gethostname()}\n"
    finally:
        finish(procs, release)


def test_a_lock_file_left_behind_is_no_obstacle_and_removed_after(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("12345@elsewhere\n")  # a killed run's file: nobody holds its lock
    suite = write(tmp_path, suite_doc(eps=(0.1,)))
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--data-dir", data_dir, "--quiet",
                                      "--no-cache"])
    assert result.exit_code == 0, result.output
    assert (out / "results.csv").is_file() and not (out / LOCK_FILE).exists()


def test_the_lock_holds_this_pid_and_refuses_a_second_holder(tmp_path):
    run_dir = RunDir(tmp_path / "out")
    with run_lock(run_dir) as path:
        assert path.read_text() == f"{os.getpid()}@{socket.gethostname()}\n"
        with pytest.raises(HarnessError, match=f"pid {os.getpid()}@"):
            with run_lock(run_dir):
                pass
        assert path.exists()  # the refused second holder did not remove the first's lock
    assert not path.exists()
    check_unlocked(run_dir)
    assert not path.exists()  # checking creates nothing


def test_an_out_under_a_read_only_directory_is_one_line_and_exit_2(tmp_path, data_dir, read_only):
    suite = write(tmp_path, suite_doc())
    parent = tmp_path / "ro"
    parent.mkdir()
    read_only(parent)
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(parent / "out"), "--data-dir", data_dir,
                                      "--no-cache"])
    assert_one_line_error(result, f"--out {parent / 'out'}", f"{parent} is read-only", "pass an --out where")
    with pytest.raises(HarnessError, match=r"cannot create the run directory \(Read-only file system\)"):
        with run_lock(RunDir(parent / "out")):  # what the check foresees, should it be skipped
            pass


def test_an_out_under_a_file_is_one_line_and_exit_2(tmp_path, data_dir):
    suite = write(tmp_path, suite_doc())
    (tmp_path / "file").write_text("not a directory")
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "file" / "out"), "--data-dir",
                                      data_dir, "--no-cache"])
    assert_one_line_error(result, f"{tmp_path / 'file'} is not a directory")
    with pytest.raises(HarnessError, match="cannot create the run directory"):
        with run_lock(RunDir(tmp_path / "file" / "out")):
            pass


# -- the end of a run --------------------------------------------------------------------------
def ctrl_c_during_the_last_cell(monkeypatch):
    """Make the runner act as if Ctrl-C came while its last cell ran (it stops once that cell is
    recorded); returns the real ``Runner._record`` to put back."""
    record = Runner._record

    def record_then_stop(self, outcome, expected, rows):
        record(self, outcome, expected, rows)
        if not expected:
            self._stop = True
    monkeypatch.setattr(Runner, "_record", record_then_stop)
    return record


def test_a_run_stopped_during_its_last_cell_gets_its_checks(tmp_path, data_dir, registry, monkeypatch):
    """Ctrl-C while the last cell runs: that cell finishes and is recorded, and the finished cells get
    their masking checks and worst-case rows before the run stops, so the table equals an
    uninterrupted run's."""
    suite = load_suite(write(tmp_path, suite_doc(eps=(0.0, 0.1))), registry)
    record = ctrl_c_during_the_last_cell(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(RunInterrupted) as info:
        Runner(suite, registry, out, Path(data_dir), torch.device("cpu")).run()
    assert info.value.done == info.value.total == 4
    stopped = read_results(out)
    assert (stopped["attack"] == WORST).sum() == 1  # eps 0.1: the bare model and its rescaling pooled
    assert stopped["checks_skipped"].str.contains("large_eps").all()  # the checks ran
    monkeypatch.setattr(Runner, "_record", record)
    whole = Runner(suite, registry, tmp_path / "whole", Path(data_dir), torch.device("cpu")).run()
    pd.testing.assert_frame_equal(stopped.drop(columns=TIMING_COLUMNS), whole.drop(columns=TIMING_COLUMNS))
    assert Runner(suite, registry, out, Path(data_dir), torch.device("cpu")).run().equals(stopped)


def test_a_second_ctrl_c_during_the_checks_leaves_the_cells_and_a_rerun_adds_the_checks(tmp_path, data_dir,
                                                                                         registry, monkeypatch):
    """A second Ctrl-C while the stopped run computes its checks: the table keeps every finished cell
    (without checks and worst cases); rerunning, with no cell left to run, adds them."""
    suite = load_suite(write(tmp_path, suite_doc(eps=(0.0, 0.1))), registry)
    record, write_table = ctrl_c_during_the_last_cell(monkeypatch), Runner._write

    def second_ctrl_c_during_the_checks(self, rows, annotate=False):
        if annotate and self._stop:
            raise KeyboardInterrupt
        return write_table(self, rows, annotate)
    monkeypatch.setattr(Runner, "_write", second_ctrl_c_during_the_checks)
    out = tmp_path / "out"
    with pytest.raises(RunInterrupted) as info:
        Runner(suite, registry, out, Path(data_dir), torch.device("cpu")).run()
    assert info.value.done == info.value.total == 4
    stopped = read_results(out)
    assert len(stopped) == 4 and WORST not in set(stopped["attack"])
    monkeypatch.setattr(Runner, "_record", record)
    monkeypatch.setattr(Runner, "_write", write_table)

    resumed = Runner(suite, registry, out, Path(data_dir), torch.device("cpu")).run()
    whole = Runner(suite, registry, tmp_path / "whole", Path(data_dir), torch.device("cpu")).run()
    assert (resumed["attack"] == WORST).sum() == 1
    assert resumed["checks_skipped"].str.contains("large_eps").all()  # the checks ran
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING_COLUMNS), whole.drop(columns=TIMING_COLUMNS))
    assert read_results(out).equals(resumed)


def test_outcome_files_are_built_by_the_run_directory(tmp_path):
    from harness.results.diagnostics import outcomes_file

    run_dir = RunDir(tmp_path / "out")
    assert outcomes_file(run_dir, "0123456789ab") == outcomes_file(run_dir.examples, "0123456789ab") \
        == (run_dir.examples / "0123456789ab.safetensors").resolve()
    with pytest.raises(HarnessError, match="outside"):
        outcomes_file(run_dir, "../../evil")  # a config_hash from an edited results.csv
    with pytest.raises(ValueError, match="examples"):
        outcomes_file(tmp_path / "out" / "models", "0123456789ab")


def test_messages_are_not_wrapped_when_output_is_not_a_terminal(tmp_path):
    """A log, a CI job or a pipe gets each message on one line, however long (a terminal wraps them)."""
    root = tmp_path / ("a-data-root-long-enough-to-pass-eighty-columns-" * 2)
    root.mkdir()
    suite = write(tmp_path, suite_doc())
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "out"), "--data-dir", str(root),
                                      "--no-cache"])
    assert result.exit_code == 0, result.output
    assert f"dataset digits: checking files under {root}\n" in result.output


# -- rows carry what their readers need ------------------------------------------------------------
class Blur:
    """A defense that changes predictions (not a logit view): its rows are pooled on their own."""

    __name__ = "blur-plugin"

    @staticmethod
    def wrap(model, options):
        return torch.nn.Sequential(torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), model)

    def __init__(self):
        from harness import hookimpl
        from harness.api import Defense

        @hookimpl
        def harness_register_defenses(register):
            register(Defense(name="blur", wrap=Blur.wrap, description="a 3x3 mean filter"))
        self.harness_register_defenses = harness_register_defenses


def test_rows_say_whether_their_defense_is_a_view_of_the_logits_whatever_is_installed_later(
        tmp_path, data_dir, harness_plugin, monkeypatch):
    from harness_reporters.leaderboard import leaderboard

    harness_plugin(Blur())
    doc = suite_doc()
    doc["defenses"]["blurred"] = {"defense": "blur"}
    doc["grid"]["defense"] = ["none", "T1", "blurred"]
    out = tmp_path / "out"
    runner = Runner(load_suite(write(tmp_path, doc), load_registry()), load_registry(), out, Path(data_dir), "cpu")
    frame = runner.run()
    views = {(r.defense, r.attack): bool(r.logit_view) for r in frame.itertuples()}
    assert views == {("none", "fgsm"): True, ("T1", "fgsm"): True, ("blurred", "fgsm"): False,
                     ("T1+none", WORST): True, ("blurred", WORST): False}
    assert "logit_view" in (out / "results.csv").read_text().splitlines()[0].split(",")
    board = leaderboard([out])

    # without the plugin that declares logit-scale a rescaler, the run still reads the same
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "rescale")
    assert read_results(out)["logit_view"].tolist() == frame["logit_view"].tolist()
    pd.testing.assert_frame_equal(leaderboard([out]), board)

    # a table written before the column existed gets it once, on reading, from the installed plugins
    monkeypatch.delenv("HARNESS_BLOCK_PLUGINS")
    pd.read_csv(out / "results.csv").drop(columns="logit_view").to_csv(out / "results.csv", index=False)
    assert read_results(out)["logit_view"].tolist() == frame["logit_view"].tolist()
