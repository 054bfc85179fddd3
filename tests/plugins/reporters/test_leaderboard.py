"""``harness leaderboard``: worst case over attacks, ranking, stable CSV bytes, errors.

Hand-made runs (results.csv, per-image outcomes, run.json) pin the arithmetic; the shared small run
checks it against a real table."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.results.diagnostics import WORST, annotate
from harness.results.table import Row, read_results, to_frame, write_csv
from harness.testing import assert_one_line_error


def invoke(*args):
    return CliRunner().invoke(cli, ["leaderboard", *map(str, args)])


def row(model, defense, T, attack, eps, robust, *, clean=1.0, kind="iterative", seed=0, n=4, suite="hand",
        config_hash=None) -> Row:
    return Row(suite=suite, dataset="mnist", model=model, architecture="repu", learners=f"{model}-learner",
               defense=defense, defense_name="logit-scale", logit_view=True, T=T, attack=attack, attack_name=attack,
               backend="torchattacks", attack_kind=kind, norm="linf", attack_params="{}", eps=eps, seed=seed, n=n,
               clean_acc=clean, robust_acc=robust, zero_grad_share=0.0, nonfinite_grad_share=0.0,
               converged_gap=float("nan"), seconds=1.0, status="ok", error="",
               config_hash=config_hash or f"{model}{defense}{attack}{eps:g}s{seed}".replace(".", ""),
               model_hash=f"{model}hash", device="cpu")


def write_run(directory, rows, outcomes=None, date="2024-05-06T07:08:09+00:00"):
    """A run directory: results.csv (with worst-case rows when per-image outcomes are given) and run.json."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    frame = to_frame(rows)
    if outcomes is not None:
        examples = directory / "examples"
        examples.mkdir()
        for r in rows:
            robust = outcomes[r.config_hash] if r.eps > 0 else [1] * r.n
            tensors = {"correct": torch.ones(r.n, dtype=torch.uint8), "robust": torch.tensor(robust, dtype=torch.uint8)}
            save_file(tensors, str(examples / f"{r.config_hash}.safetensors"))
        frame = annotate(frame, examples)
    write_csv(frame, directory / "results.csv")
    record = {"format": 1, "suite": {"name": rows[0].suite}, "versions": {"torch": "9.9", "harness": "0.0"},
              "device": "cpu", "runs": [{"started": "2020-01-01T00:00:00+00:00"}, {"started": date}]}
    (directory / "run.json").write_text(json.dumps(record))
    return directory


# Two attacks that fool different images: each leaves 50 %, together only image 0 survives (25 %).
OUTCOMES = {"bioT1pgd01s0": [1, 1, 0, 0], "bioT1e5fgsm01s0": [1, 0, 1, 0],
            "bpT1pgd01s0": [1, 1, 1, 0], "bpT1e5fgsm01s0": [1, 1, 0, 1]}


def hand_rows():
    return [row("bio", "T1", 1.0, "pgd", 0.0, 1.0), row("bio", "T1", 1.0, "pgd", 0.1, 0.5),
            row("bio", "T1e5", 1e5, "fgsm", 0.1, 0.5, kind="single-step"),
            row("bp", "T1", 1.0, "pgd", 0.1, 0.75), row("bp", "T1e5", 1e5, "fgsm", 0.1, 0.75, kind="single-step")]


def read_board(path):
    return pd.read_csv(path, dtype={"config_hash": str, "model_hash": str})


def test_worst_case_is_per_image_over_attacks_and_rescalings(tmp_path):
    run = write_run(tmp_path / "hand", hand_rows(), OUTCOMES)
    result = invoke(run, "--csv", tmp_path / "board.csv")
    assert result.exit_code == 0, result.output
    board = read_board(tmp_path / "board.csv").set_index("model")
    assert list(board.index) == ["bp", "bio"]  # 50 % above 25 %
    # bio: pgd leaves images 0 and 1, fgsm leaves 0 and 2: per image, only image 0 survives both
    assert board.loc["bio", "robust_acc"] == pytest.approx(0.25)
    assert board.loc["bp", "robust_acc"] == pytest.approx(0.5)
    for model in ("bio", "bp"):
        line = board.loc[model]
        assert line["worst_case"] == "per-image" and line["defense"] == "T1+T1e5" and line["attacks"] == 2
        assert line["n"] == 4 and line["seeds"] == 1 and line["eps"] == 0.1 and line["norm"] == "linf"
        assert line["date"] == "2024-05-06"  # the run's last invocation, not today
        assert line["versions"] == "harness 0.0, torch 9.9"
        assert line["learners"] == f"{model}-learner" and line["model_hash"] == f"{model}hash"
    assert board.loc["bio", "rank"] == 2 and board.loc["bp", "rank"] == 1
    frame = read_results(run)
    worst = frame[(frame["attack"] == WORST)].set_index("model")
    assert board.loc["bio", "config_hash"] == worst.loc["bio", "config_hash"]
    assert bool(board.loc["bio", "unreliable"]) == bool(worst.loc["bio", "unreliable"])


def test_without_per_image_rows_the_worst_case_is_the_strongest_single_attack(tmp_path):
    rows = hand_rows() + [row("bio", "T1e5", 1e5, "apgd", 0.1, 0.125)]
    run = write_run(tmp_path / "plain", rows)  # no outcomes: no worst-case rows
    result = invoke(run, "--csv", tmp_path / "board.csv")
    assert result.exit_code == 0, result.output
    board = read_board(tmp_path / "board.csv").set_index("model")
    for model, attacks in (("bio", ["pgd", "fgsm", "apgd"]), ("bp", ["pgd", "fgsm"])):
        accuracies = {r.attack: r.robust_acc for r in rows if r.model == model and r.eps == 0.1}
        assert board.loc[model, "robust_acc"] == pytest.approx(min(accuracies.values()))
        assert board.loc[model, "worst_case"] == "min-over-attacks"
        assert board.loc[model, "attacks"] == len(attacks)
    assert board.loc["bio", "strongest_attack"] == "apgd (T=1e5)"
    # ties between attacks are broken by name: fgsm before pgd
    assert board.loc["bp", "strongest_attack"] == "fgsm (T=1e5)"


def test_seeds_are_averaged(tmp_path):
    rows = [row("bio", "T1", 1.0, "pgd", 0.1, 0.5, seed=0), row("bio", "T1", 1.0, "pgd", 0.1, 0.25, seed=1)]
    run = write_run(tmp_path / "seeds", rows)
    result = invoke(run, "--csv", tmp_path / "board.csv")
    assert result.exit_code == 0, result.output
    line = read_board(tmp_path / "board.csv").iloc[0]
    assert line["seeds"] == 2 and line["robust_acc"] == pytest.approx(0.375)
    assert line["config_hash"].count("+") == 1
    # sd and t-interval over the two seeds: 0.375 +- t(0.975, 1) * 0.125 = [-1.21, 1.96], an accuracy's
    # interval clipped to [0, 1] (the CSV keeps six significant digits)
    assert line["robust_sd"] == pytest.approx(0.125 * 2 ** 0.5, rel=1e-5)
    assert (line["robust_low"], line["robust_high"]) == (0, 1)


def test_csv_bytes_are_stable_and_independent_of_argument_order(tmp_path):
    one = write_run(tmp_path / "one", hand_rows(), OUTCOMES)
    cells = [("bio", 0.1, 0.9), ("bio", 0.2, 0.45), ("bp", 0.1, 0.45)]
    other = [row(m, "T1", 1.0, "pgd", e, r, suite="other", config_hash=f"o{i}") for i, (m, e, r) in enumerate(cells)]
    two = write_run(tmp_path / "two", other)
    paths = [tmp_path / f"{name}.csv" for name in "abc"]
    assert invoke(one, two, "--csv", paths[0]).exit_code == 0
    assert invoke(one, two, "--csv", paths[1]).exit_code == 0
    assert invoke(two, one, one, "--csv", paths[2]).exit_code == 0  # order and repeats do not matter
    assert paths[0].read_bytes() == paths[1].read_bytes() == paths[2].read_bytes()
    board = read_board(paths[0])
    assert len(board) == 5  # 2 + 3 lines: runs are not pooled
    # grouped by threat model, ranked by robust accuracy (descending) inside it
    for _, group in board.groupby(["dataset", "norm", "eps"], sort=False):
        assert list(group["robust_acc"]) == sorted(group["robust_acc"], reverse=True)
        assert group["rank"].iloc[0] == 1
    assert list(board["eps"]) == sorted(board["eps"])


def test_small_run_against_its_own_worst_case_rows(small_run, tmp_path):
    _, frame, directory = small_run
    out = tmp_path / "board.csv"
    result = invoke(directory, "--csv", out)
    assert result.exit_code == 0, result.output
    board = read_board(out)
    ok = frame[frame["status"] == "ok"]
    worst = ok[ok["attack"] == WORST]
    attacked = ok[(ok["attack"] != WORST) & (ok["eps"] > 0)]
    assert len(board) == len(worst) == attacked.groupby(["model", "eps"]).ngroups
    for line in board.itertuples():
        expected = worst[(worst["model"] == line.model) & (worst["eps"] == line.eps)].iloc[0]
        assert line.robust_acc == pytest.approx(expected["robust_acc"], abs=1e-6)
        cells = attacked[(attacked["model"] == line.model) & (attacked["eps"] == line.eps)]
        assert line.robust_acc <= cells["robust_acc"].min() + 1e-9  # per image is at least as strong
        strongest = cells.sort_values(["robust_acc", "attack", "defense"]).iloc[0]
        assert line.strongest_attack.startswith(strongest["attack"] + " (T=")
        assert line.attacks == len(cells) and line.n == expected["n"]
        assert bool(line.unreliable) == bool(expected["unreliable"])
        assert line.clean_acc == pytest.approx(cells["clean_acc"].mean(), abs=1e-6)
        assert isinstance(line.date, str) and len(line.date) == 10


def test_stdout_table_and_markdown(small_run):
    _, frame, directory = small_run
    shown = invoke(directory)
    assert shown.exit_code == 0, shown.output
    for eps in (0.1, 0.2):
        assert f"eps = {eps:g}" in shown.output
    worst = frame[frame["attack"] == WORST]
    for value in worst["robust_acc"]:
        assert f"{100 * value:.1f}" in shown.output
    markdown = invoke(directory, "--markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.output.strip().splitlines()
    assert lines[0].startswith("| rank | dataset | norm | eps | model |")
    assert len(lines) == 2 + len(worst)
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_errors_are_one_line_with_exit_code_2(small_run, tmp_path):
    assert_one_line_error(invoke(tmp_path / "missing"), "missing", "no such directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke(small_run[2], empty), "empty", "no results.csv")
    broken = tmp_path / "broken"
    shutil.copytree(small_run[2], broken, ignore=shutil.ignore_patterns("models", "examples"))
    (broken / "results.csv").write_text("a,b\n1,2\n")
    assert_one_line_error(invoke(broken), "not a harness results table")
    assert invoke().exit_code == 2  # no run directory at all: click's usage error


def test_a_run_without_attacks_gives_an_empty_table(tmp_path):
    run = write_run(tmp_path / "clean", [row("bio", "T1", 1.0, "pgd", 0.0, 1.0)])
    result = invoke(run, "--csv", tmp_path / "board.csv")
    assert result.exit_code == 0, result.output
    assert "no attacked cells" in result.output
    assert read_board(tmp_path / "board.csv").empty
