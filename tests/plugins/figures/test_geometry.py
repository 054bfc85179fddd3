"""`harness diagnose geometry`: margins, boundary distance, active units and gradients per logit view,
on a run's own test images (plugins/harness_figures/geometry.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.suite.tomlwrite import to_toml
from suite_builder import backprop, bio, changed, repu, suite, torchattacks

SUITE = changed(suite(
    train_size=1000, test_size=None,
    models={"bio": bio(16, {"epochs": 2, "stop_after": 1}, {"epochs": 2}),
            "bp": repu(16, backprop(epochs=2), power=1.0, beta=1.0)},
    attacks={"clean": torchattacks("fgsm")},
    grid={"model": ["bio", "bp"], "attack": ["clean"], "eps": [0.0]}),
    {"data.test_subset": {"n": 100, "seed": 3}})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("geometry") / "run"
    path = out.parent / "suite.toml"
    path.write_text(to_toml(SUITE))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--no-cache"])
    assert result.exit_code == 0, result.output
    return out


def test_one_row_per_model_and_view_with_the_run_s_clean_accuracy(run_dir, tmp_path):
    from harness.results.table import read_results

    out = tmp_path / "geometry.csv"
    result = CliRunner().invoke(cli, ["diagnose", "geometry", str(run_dir), "--T", "1", "--T", "1e5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(zip(table["model"], table["T"])) == [("bio", 1.0), ("bio", 1e5), ("bp", 1.0), ("bp", 1e5)]
    assert set(table["images"]) == {100}   # the run's test_subset
    assert table.loc[table["model"] == "bp", "hebbian_epochs"].isna().all()
    assert (table.loc[table["model"] == "bio", "hebbian_epochs"] == 1).all()  # the checkpoint, not the schedule
    rows = read_results(run_dir).set_index("model")["clean_acc"]
    for model, clean in table.groupby("model")["clean"].first().items():
        assert clean == pytest.approx(rows[model], abs=1e-9)  # same images, same models as the run
    assert table["active"].between(0, 1).all() and (table["boundary"] > 0).all()
    zero = table.set_index(["model", "T"])["zero_grad"]
    assert zero["bp", 1.0] == 0 and zero["bp", 1e5] == 0  # a ReLU net's cross-entropy keeps its gradient


def test_the_boundary_distance_ignores_the_logit_scale(mnist_small, registry):
    import torch

    from harness_figures.geometry import geometry

    spec = registry.models.get("repu")
    torch.manual_seed(0)
    model = spec.build({**spec.defaults, "hidden": 32, "power": 2.0}, registry.datasets.get("mnist").info).eval()
    x, y = mnist_small[2][:200], mnist_small[3][:200]
    base = geometry(model, x, y, (1.0,))
    model.beta *= 10
    scaled = geometry(model, x, y, (1.0,))
    assert scaled.logit_scale == pytest.approx(10 * base.logit_scale, rel=1e-5)
    assert scaled.margin == pytest.approx(10 * base.margin, rel=1e-5)
    assert scaled.boundary == pytest.approx(base.boundary, rel=1e-9)
    assert 0 < base.active < 1


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    from harness.testing import assert_one_line_error

    assert_one_line_error(CliRunner().invoke(cli, ["diagnose", "geometry", str(tmp_path)]), "not a run directory")
    bad = CliRunner().invoke(cli, ["diagnose", "geometry", str(tmp_path), "--T", "0"])
    assert bad.exit_code == 2 and "--T" in bad.output and "Traceback" not in bad.output
