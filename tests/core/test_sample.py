"""``[data] test_subset``: a seeded, stratified random sample of the test split, the same images for
every cell, recorded in run.json and in each row; suites without it keep their cell hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.errors import SuiteError
from harness.plugins import load_registry
from harness.suite.load import config_hash, load_suite
from harness.suite.sample import Sample
from harness.suite.tomlwrite import to_toml
from suite_builder import TINY

TINY_SUITE = to_toml(TINY)  # as text: the cases below replace its test_size line


@pytest.fixture(scope="module")
def test_labels(mnist_root):
    return load_registry().get("datasets", "mnist").load(mnist_root, False)[1]


def test_stratified_sample_keeps_each_class_share(test_labels):
    chosen = Sample(n=1000, seed=0).indices(test_labels)
    assert len(chosen) == 1000 == len(chosen.unique())
    assert torch.equal(chosen, chosen.sort().values)
    counts = torch.bincount(test_labels[chosen], minlength=10)
    expected = torch.bincount(test_labels, minlength=10) * 1000 / len(test_labels)
    assert ((counts - expected).abs() < 1).all()          # largest remainder: within one image
    assert torch.equal(chosen, Sample(n=1000, seed=0).indices(test_labels))
    assert not torch.equal(chosen, Sample(n=1000, seed=1).indices(test_labels))
    assert chosen.max() > 1000                           # not the first 1 000


def test_unstratified_sample_and_too_large_n(test_labels):
    chosen = Sample(n=500, seed=3, stratified=False).indices(test_labels)
    assert len(chosen.unique()) == 500 and chosen.max() < len(test_labels)
    with pytest.raises(ValueError, match="exceeds the 10000 images"):
        Sample(n=10001).indices(test_labels)


@pytest.mark.parametrize("data, key, message", [
    ("test_size = 100\ntest_subset = { n = 50 }", "data.test_subset", "not both"),
    ("test_subset = { n = 50, sead = 1 }", "data.test_subset.sead", "did you mean"),
    ("test_subset = { seed = 1 }", "data.test_subset.n", "missing"),
    ("test_subset = { n = 0 }", "data.test_subset.n", "positive integer"),
    ("test_subset = { n = 50, seed = -1 }", "data.test_subset.seed", ">= 0"),
    ("test_subset = { n = 50, stratified = 1 }", "data.test_subset.stratified", "true or false"),
    ("test_subset = 50", "data.test_subset", "expected a table"),
])
def test_bad_test_subset_names_the_key(write_suite, data, key, message):
    path = write_suite(TINY_SUITE.replace("test_size = 200", data))
    with pytest.raises(SuiteError, match=f"{key}: .*{message}"):
        load_suite(path, load_registry())


def test_cell_hashes_change_only_with_a_subset(write_suite):
    registry = load_registry()
    first = load_suite(write_suite(TINY_SUITE, "first.toml"), registry)
    sampled = load_suite(write_suite(TINY_SUITE.replace("test_size = 200", "test_subset = { n = 200 }"),
                                     "sampled.toml"), registry)
    assert "test_subset" not in first.cell_config(first.cells[0])   # old suites keep their hashes
    assert {config_hash(first.cell_config(c)) for c in first.cells}.isdisjoint(
        config_hash(sampled.cell_config(c)) for c in sampled.cells)
    # the trained models do not depend on the test images: the cache serves both
    assert first.model_config("mnist", "bio", 0) == sampled.model_config("mnist", "bio", 0)


def test_a_run_on_a_random_sample_records_it(run_suite, mnist_root):
    suite = TINY_SUITE.replace("test_size = 200", "test_subset = { n = 150, seed = 7 }")
    import tomllib

    frame = run_suite(tomllib.loads(suite))
    assert (frame["n"] == 150).all()
    assert set(frame["test_images"]) == {"random 150 (seed 7, stratified)"}
    record = json.loads((Path(frame.attrs["out_dir"]) / "run.json").read_text())
    assert record["data"]["test_subset"] == {"n": 150, "seed": 7, "stratified": True}
    # the clean accuracy is that of the sampled images, not of the first 150
    from harness.run.modelstore import load_model

    registry = load_registry()
    x, y = registry.get("datasets", "mnist").load(mnist_root, False)
    row = frame[(frame["model"] == "bp") & (frame["defense"] == "none") & (frame["eps"] == 0)].iloc[0]
    path = next((Path(frame.attrs["out_dir"]) / "models").glob(f"bp-seed0-{row['model_hash']}.safetensors"))
    module, _ = load_model(path, registry)
    chosen = Sample(n=150, seed=7).indices(y)
    with torch.no_grad():
        correct = (module(x[chosen]).argmax(1) == y[chosen]).float().mean().item()
    assert row["clean_acc"] == pytest.approx(correct, abs=1e-6)
