"""``harness run SUITE --set KEY=VALUE``: overrides parsed as TOML, validated like the file, recorded
in run.json, and the effective suite kept as OUT/suite.toml so a rerun resumes the same grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import SuiteError
from harness.results.table import read_results
from harness.suite.load import config_hash, load_suite
from harness.suite.overrides import apply, parse

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The tiny suite of conftest.py made smaller still from the command line: 16 hidden units, one model,
# 50 test images, PGD at one eps (2 cells: T1e5 and none); the exclusion names an attack no longer
# on the grid, so it goes too (the file's validation would refuse a rule that matches nothing).
SMALLER = ["models.bp.hidden=16", "data.test_size=50", "data.train_size=500", 'grid.model=["bp"]',
           "grid.attack=[\"pgd\"]", "grid.eps=[0.1]", "grid.exclude=[]", "models.bp.stages.0.epochs=1"]


@pytest.mark.parametrize("pair, parts, value", [
    ("models.bio.hidden=2000", ["models", "bio", "hidden"], 2000),
    ("grid.eps=[0.1, 0.2]", ["grid", "eps"], [0.1, 0.2]),
    ("defenses.T.T=1e5", ["defenses", "T", "T"], 1e5),
    ("defenses.T.T=auto", ["defenses", "T", "T"], "auto"),
    ('suite.name="two words"', ["suite", "name"], "two words"),
    ('models."my.net".hidden = 3', ["models", "my.net", "hidden"], 3),
    ("models.bio.stages.1.epochs=2", ["models", "bio", "stages", "1", "epochs"], 2),
    ("attacks.x={ attack = \"fgsm\" }", ["attacks", "x"], {"attack": "fgsm"}),
    ("eval.convergence_images=0", ["eval", "convergence_images"], 0),
])
def test_parse_reads_dotted_keys_and_toml_values(pair, parts, value):
    assert parse(pair) == (parts, value)


@pytest.mark.parametrize("pair, fragment", [
    ("models.bio.hidden", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("grid.eps=[0.1", "not a TOML value"),
    ("a b=1", "not a dotted key"),
    ("data.test_size=1\nx = 2", "expected one value"),
])
def test_parse_rejects_malformed_overrides(pair, fragment):
    with pytest.raises(SuiteError, match="--set") as error:
        parse(pair)
    assert fragment in str(error.value)


def test_apply_sets_into_lists_of_tables_and_leaves_the_input_alone():
    raw = {"models": {"bio": {"model": "repu", "stages": [{"learner": "a"}, {"learner": "b", "epochs": 5}]}},
           "grid": [{"eps": [0.1]}, {"eps": [0.2]}]}
    result = apply(raw, ["models.bio.stages.1.epochs=2", "grid.1.eps=[0.3]", "data.test_size=7"], Path("s.toml"))
    assert result["models"]["bio"]["stages"][1]["epochs"] == 2 and result["grid"][1]["eps"] == [0.3]
    assert result["data"] == {"test_size": 7}
    assert raw["models"]["bio"]["stages"][1]["epochs"] == 5 and "data" not in raw


@pytest.mark.parametrize("pair, fragments", [
    ("models.bio.hiden=100", ["toml: models.bio.hiden: unknown parameter 'hiden'", "did you mean 'hidden'?",
                              "(--set models.bio.hiden=100)"]),
    ("models.bioo.hidden=100", ["models.bioo: the suite declares no models.bioo", "did you mean 'bio'?"]),
    ("data.test_size=-1", ["data.test_size: expected a positive integer", "(--set data.test_size=-1)"]),
    ("grid.seed=[-1]", ["grid.seed: seeds must be non-negative integers", "(--set grid.seed=[-1])"]),
    ("modls.bio.hidden=1", ["modls: unknown key 'modls'; did you mean 'models'?"]),
    ("models.bio.stages.3.epochs=1", ["models.bio.stages is a list of 2 tables", "models.bio.stages.0 to"]),
    ("models.bio.stages.1.epoch=1", ["models.bio.stages.1.epoch: unknown parameter 'epoch'", "'epochs'"]),
    ("models.bio.hidden.x=1", ["models.bio.hidden: is a value (64), not a table"]),
    ('grid.attack=["fgsm", "pgdd"]', ["grid.attack: 'pgdd' is not declared under [attacks]", "'pgd'"]),
    ("defenses.T1e5.T=-1", ["defenses.T1e5.T: expected a positive temperature"]),
])
def test_overrides_are_validated_like_the_file(tiny_suite, registry, pair, fragments):
    with pytest.raises(SuiteError) as error:
        load_suite(tiny_suite, registry, [pair])
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{tiny_suite}: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_new_entry_may_be_declared_from_the_command_line(tiny_suite, registry):
    suite = load_suite(tiny_suite, registry, ["attacks.bim.attack=bim", 'grid.attack=["bim"]', "grid.exclude=[]"])
    assert {c.attack for c in suite.cells} == {"bim"} and suite.attacks["bim"].plugin == "bim"


def test_the_effective_suite_loads_to_the_same_grid(tiny_suite, registry, tmp_path):
    suite = load_suite(tiny_suite, registry, SMALLER)
    assert suite.overrides == tuple(SMALLER) and suite.models["bp"].options["hidden"] == 16
    assert len(suite.cells) == 2 and suite.test_size == 50
    copy = tmp_path / "effective.toml"
    copy.write_text(suite.source)
    assert "--set models.bp.hidden=16" in suite.source  # the header names the overrides
    again = load_suite(copy, registry)
    assert [config_hash(again.cell_config(c)) for c in again.cells] == \
        [config_hash(suite.cell_config(c)) for c in suite.cells]
    # without overrides the file is read as it is: no effective text of its own
    assert load_suite(tiny_suite, registry).source is None


def test_run_with_set_records_the_overrides_and_resumes(tiny_suite, mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    arguments = ["run", str(tiny_suite), "--device", "cpu", "--quiet"] + [a for p in SMALLER for a in ("--set", p)]
    first = runner.invoke(cli, arguments)
    assert first.exit_code == 0, first.output
    outs = list((tmp_path / "runs").iterdir())
    assert len(outs) == 1 and outs[0].name.startswith("tiny-set-")  # not runs/tiny: another grid
    out = outs[0]
    frame = read_results(out)
    cells = frame[frame["attack"] != "worst-case"]
    assert len(cells) == 2 and (cells["status"] == "ok").all() and set(cells["n"]) == {50}
    record = json.loads((out / "run.json").read_text())
    assert record["suite"]["overrides"] == SMALLER and record["runs"][-1]["overrides"] == SMALLER
    assert record["runs"][-1]["cells_todo"] == 2
    effective = (out / "suite.toml").read_text()
    assert "hidden = 16" in effective and "test_size = 50" in effective

    again = runner.invoke(cli, arguments)  # the same command: every cell is done
    assert again.exit_code == 0, again.output
    assert json.loads((out / "run.json").read_text())["runs"][-1]["cells_todo"] == 0
    # the run directory's own suite.toml, without --set, is the same grid
    resumed = runner.invoke(cli, ["run", str(out / "suite.toml"), "--out", str(out), "--device", "cpu", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "run.json").read_text())["runs"][-1]["cells_todo"] == 0
    assert len(read_results(out)) == len(frame)


def test_run_with_a_bad_override_is_one_line(tiny_suite, mnist_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    result = CliRunner().invoke(cli, ["run", str(tiny_suite), "--set", "models.bio.hiden=100"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean 'hidden'?" in lines[0] and "(--set models.bio.hiden=100)" in lines[0]
