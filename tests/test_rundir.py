"""The run directory (harness.rundir): names from a suite cannot point outside it, one `harness run`
writes it at a time, and eps is a budget in the norm of the cell's attack. Runs use scikit-learn's
digits (8x8 images, nothing downloaded) and a tiny model, so each takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import cli
from harness.errors import HarnessError, SuiteError
from harness.plugins import load_registry
from harness.rundir import LOCK_FILE, RunDir, run_lock
from harness.suite import SAFE_NAME, load_suite
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
    from harness.results import read_results

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
def finished_pid() -> int:
    """The pid of a process that has exited (and been reaped): a stale lock's."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_second_run_into_the_same_out_refuses_naming_the_first(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(f"{holder.pid}\n")
        suite = write(tmp_path, suite_doc())
        result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--data-dir", data_dir, "--quiet",
                                          "--no-cache"])
        assert_one_line_error(result, str(out), f"another `harness run` (pid {holder.pid})", "another --out")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else written
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_and_the_lock_removed_after(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"{finished_pid()}\n")
    suite = write(tmp_path, suite_doc(eps=(0.1,)))
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--data-dir", data_dir, "--quiet",
                                      "--no-cache"])
    assert result.exit_code == 0, result.output
    assert (out / "results.csv").is_file() and not (out / LOCK_FILE).exists()


def test_the_lock_holds_this_pid_and_refuses_a_second_holder(tmp_path):
    run_dir = RunDir(tmp_path / "out")
    with run_lock(run_dir) as path:
        assert path.read_text().split("@")[0] == str(os.getpid())
        with pytest.raises(HarnessError, match=f"pid {os.getpid()}"):
            with run_lock(run_dir):
                pass
        assert path.exists()  # the refused second holder did not remove the first's lock
    assert not path.exists()
