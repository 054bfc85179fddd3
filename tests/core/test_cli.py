"""The CLI through click's CliRunner, on real (tiny) MNIST runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.results.table import read_results
from harness.testing import assert_one_line_error
from suite_builder import DROP, TINY, changed


@pytest.fixture
def runner(mnist_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    return CliRunner()


def test_run_writes_results_and_rerun_continues(runner, tiny_suite, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(tiny_suite), "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    frame = read_results(out)
    cells = frame[frame["attack"] != "worst-case"]
    assert len(cells) == 12 and (frame["status"] == "ok").all()
    assert set(frame["device"]) == {"cpu"}
    # one worst-case row per model and eps > 0: T = 1e5 only rescales, so it pools with the bare model
    worst = frame[frame["attack"] == "worst-case"]
    assert sorted(worst["model"]) == ["bio", "bp"] and set(worst["eps"]) == {0.1}
    for _, row in worst.iterrows():
        assert row.robust_acc <= cells[(cells["model"] == row.model) & (cells["eps"] == 0.1)]["robust_acc"].min()
    assert "robust accuracy" in result.output and "T1e5" in result.output
    assert sorted(p.suffix for p in (out / "models").iterdir()) == [".json", ".json", ".safetensors", ".safetensors"]
    # outputs are ordinary readable files, not mkstemp's private 0600
    for path in [out / "results.csv", *(out / "models").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o644, path

    before = (out / "results.csv").read_bytes()
    again = runner.invoke(cli, ["run", str(tiny_suite), "--out", str(out), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "12 cell(s) already in" in again.output
    assert (out / "results.csv").read_bytes() == before

    shown = runner.invoke(cli, ["results", str(out)])
    assert shown.exit_code == 0 and "bio" in shown.output and "eps=0.1" in shown.output


def test_plugins_lists_everything_with_its_plugin(runner):
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    for name in ("mnist", "hebbian", "backprop", "repu", "fgsm@torchattacks", "pgd@torchattacks", "pgd@art",
                 "logit-scale", "robustness-harness"):
        assert name in result.output
    for kind in ("dataset", "learner", "model", "attack", "defense"):
        assert kind in result.output


def test_data_fetch_verifies(runner, mnist_root):
    result = runner.invoke(cli, ["data", "fetch", "mnist"])
    assert result.exit_code == 0, result.output
    assert f"4 file(s) verified under {mnist_root}" in result.output
    assert_one_line_error(runner.invoke(cli, ["data", "fetch", "mnsit"]), "unknown dataset 'mnsit'", "did you mean 'mnist'")


def test_bad_inputs_give_one_line_and_exit_2(runner, tiny_suite, write_suite, tmp_path):
    assert_one_line_error(runner.invoke(cli, ["run", str(tmp_path / "nope.toml")]), "nope.toml", "not found")
    bad_attack = write_suite(changed(TINY, {"attacks.pgd.attack": "pgdd"}), "bad.toml")
    assert_one_line_error(runner.invoke(cli, ["run", str(bad_attack)]), "bad.toml", "attacks.pgd.attack",
                   "did you mean 'pgd'")
    bad_eps = write_suite(changed(TINY, {"grid.eps": [0.0, 1.5]}), "eps.toml")
    assert_one_line_error(runner.invoke(cli, ["run", str(bad_eps)]), "eps.toml", "grid.eps", "[0, 1]")
    missing_key = write_suite(changed(TINY, {"data.dataset": DROP}), "nodata.toml")
    assert_one_line_error(runner.invoke(cli, ["run", str(missing_key)]), "data.dataset", "missing")
    assert_one_line_error(runner.invoke(cli, ["run", str(tiny_suite), "--data-dir", str(tmp_path / "absent")]),
                   "--data-dir", "does not exist")
    assert_one_line_error(runner.invoke(cli, ["run", str(tiny_suite), "--device", "tpu"]), "--device tpu")
    assert_one_line_error(runner.invoke(cli, ["results", str(tmp_path)]), "no results table")


def test_bad_input_leaves_existing_results_untouched(runner, tiny_suite, write_suite, tmp_path):
    out = tmp_path / "out"
    ok = runner.invoke(cli, ["run", str(tiny_suite), "--out", str(out), "--quiet", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    before = (out / "results.csv").read_bytes()
    broken = write_suite(changed(TINY, {"defenses.T1e5.T": -1}), "broken.toml")
    assert_one_line_error(runner.invoke(cli, ["run", str(broken), "--out", str(out)]), "defenses.T1e5.T", "positive")
    assert (out / "results.csv").read_bytes() == before


def test_plugins_json_lists_records_with_their_options(runner):
    import json

    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    records = {(r["kind"], r["key"]): r for r in json.loads(result.output)}
    pgd = records[("attack", "pgd@torchattacks")]
    assert pgd["plugin"] == "torchattacks" and pgd["distribution"] == "robustness-harness"
    assert pgd["defaults"] == {"alpha": 2 / 255, "steps": 10, "random_start": True}
    hebbian = records[("learner", "hebbian")]
    assert set(hebbian["presets"]) == {"krotov2019", "thesis", "thesis-appendix"}
    assert hebbian["presets"]["thesis"]["k"] == 2
    backprop = records[("learner", "backprop")]
    assert backprop["defaults"]["optimizer_reset"] == "never"
    assert backprop["presets"]["thesis"]["optimizer_reset"] == "epoch"
    assert records[("model", "repu")]["presets"]["krotov2019"]["unit_inputs"] is True
    assert {kind for kind, _ in records} == {"dataset", "learner", "model", "attack", "defense", "executor", "command"}


def test_hook_trace_names_each_call_and_what_it_registered(runner, monkeypatch, capfd):
    from harness.plugins import load_registry

    monkeypatch.setenv("HARNESS_TRACE_HOOKS", "1")
    load_registry()
    lines = capfd.readouterr().err.splitlines()
    assert "harness hook: harness_register_defenses of plugin 'rescale' (robustness-harness) registered logit-scale" in lines
    assert any(line.startswith("harness hook: harness_register_attacks of plugin 'art'") for line in lines)
    monkeypatch.setenv("HARNESS_TRACE_HOOKS", "0")
    load_registry()
    assert capfd.readouterr().err == ""


def test_results_table_never_cuts_names(tmp_path):
    """A table with many eps columns still shows the backend whole (it was `torchattac…`)."""
    from harness.results.table import Row, to_frame, write_csv

    rows = [Row(suite="s", dataset="mnist", model="bio", architecture="repu", learners="backprop[*]",
                defense="none", defense_name="none", T=1.0, attack="pgd-long-name", attack_name="pgd",
                backend="torchattacks", attack_kind="iterative", norm="linf", attack_params="{}", eps=eps, seed=0,
                n=100, clean_acc=0.9, robust_acc=0.5, zero_grad_share=0.0, nonfinite_grad_share=0.0,
                converged_gap=0.0, seconds=1.0, status="ok", error="", config_hash=f"h{i}", model_hash="m",
                device="cpu") for i, eps in enumerate([0.01 * k for k in range(1, 16)])]
    write_csv(to_frame(rows), tmp_path / "results.csv")
    shown = CliRunner().invoke(cli, ["results", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "torchattacks" in shown.output and "pgd-long-name" in shown.output and "…" not in shown.output


def test_help_texts_say_what_a_newcomer_needs():
    """Summaries are whole sentences; the defaults and arguments a first run needs are spelled out."""
    invoke = lambda *args: " ".join(CliRunner().invoke(cli, [*args, "--help"]).output.split())  # noqa: E731
    top = invoke()
    commands = top.split("Commands:")[1]
    assert "..." not in commands and "…" not in commands
    assert "List or remove trained models in the cache shared by every run." in commands
    assert "..." not in invoke("cache").split("Commands:")[1]
    run = invoke("run")
    assert "the one registered as the default" not in run
    assert "Default: the executor that declares itself the default; with the built-in plugins, local" in run
    assert "MODEL_A and MODEL_B are model keys of the run's suite" in invoke("compare")
