"""The fixtures harness.testing gives plugin authors (loaded through the pytest11 entry point), as
seen from the project's own tests. tests/examples/test_softhebb_package.py runs a third-party package's tests
with them in a fresh pytest process."""

from __future__ import annotations

import math
import tomllib

import pytest

from harness.plugins import make_manager
from harness.testing import to_toml


def test_pytest_loaded_the_fixtures_through_the_entry_point(pytestconfig):
    plugin = pytestconfig.pluginmanager.get_plugin("harness")
    assert plugin is not None and plugin.__name__ == "harness.testing"


def test_harness_dataset_is_the_digits(harness_dataset):
    data = harness_dataset
    assert (data.name, data.info.input_shape, data.info.num_classes) == ("digits", (1, 8, 8), 10)
    assert data.x.shape == (1438, 1, 8, 8) and data.x_test.shape == (359, 1, 8, 8)
    assert 0 <= float(data.x.min()) and float(data.x.max()) <= 1
    assert sorted(data.y.unique().tolist()) == list(range(10))


def test_harness_model_is_trained_frozen_and_a_copy(harness_model, harness_dataset):
    from harness.kit.measures import accuracy

    assert accuracy(harness_model, harness_dataset.x_test, harness_dataset.y_test) > 0.9
    assert not harness_model.training and not any(p.requires_grad for p in harness_model.parameters())
    harness_model.fc1.weight.zero_()  # must not leak into the next test


def test_harness_model_is_fresh_in_every_test(harness_model):
    assert float(harness_model.fc1.weight.abs().sum()) > 0


def test_harness_plugin_loads_built_ins_and_the_plugin_only(harness_plugin, monkeypatch):
    import types

    from harness import hookimpl
    from harness.api import Learner
    from harness.plugins import builtin_plugin_names

    plugin = types.SimpleNamespace(__name__="mine", harness_register_learners=hookimpl(
        lambda register: register(Learner(name="mine-rule", train=lambda ctx: {}))))
    assert harness_plugin(plugin) == "mine"
    pm = make_manager()
    names = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    assert names == {*builtin_plugin_names(), "mine"}


def test_the_temporary_plugin_is_gone_afterwards():
    pm = make_manager()
    assert pm.get_plugin("mine") is None


def test_to_toml_round_trips_a_suite():
    suite = {
        "suite": {"name": "t", "description": 'quotes " and \\ and\nnewline'},
        "data": {"dataset": ["mnist", "digits"], "test_size": 10},
        "models": {"bio": {"model": "repu", "hidden": 8, "beta": 1e-05,
                           "stages": [{"learner": "hebbian", "params": ["fc1.weight"], "freeze": True},
                                      {"learner": "backprop", "schedule": [[1e-3, 2], [5e-4, 1]]}]}},
        "defenses": {"T big": {"defense": "logit-scale", "T": math.inf}},
        "grid": [{"model": ["bio"], "attack": ["a"], "eps": [0.0, 0.1], "exclude": [{"eps": 0.0}]},
                 {"model": ["bio"], "attack": ["b"], "eps": [0.2]}],
    }
    text = to_toml(suite)
    assert "[[models.bio.stages]]" in text and '[defenses."T big"]' in text and "[[grid]]" in text
    assert tomllib.loads(text) == suite


def test_to_toml_names_the_key_it_cannot_write():
    with pytest.raises(TypeError, match=r"models\.bio\.hidden: TOML cannot hold NoneType"):
        to_toml({"models": {"bio": {"hidden": None}}})


def test_stage_context_trains_a_registered_learner_as_a_run_would(harness_plugin, harness_dataset):
    """A third-party learner, registered for the test, gets the context `harness run` gives one stage: its
    defaults under the test's options, its check, the named parameters only, the data as given."""
    import types

    import torch

    from harness import hookimpl
    from harness.api import Learner
    from harness.plugins import load_registry
    from harness.testing import stage_context

    seen = {}

    def train(ctx):
        seen.update(options=dict(ctx.options), params=sorted(ctx.params), n=len(ctx.x), seed=ctx.seed)
        with torch.no_grad():
            for param in ctx.params.values():
                param.mul_(ctx.options["scale"])
        return {"history": [{"epoch": 1}]}

    def check(options):
        if options["scale"] <= 0:
            raise ValueError("scale: expected a positive number")

    harness_plugin(types.SimpleNamespace(__name__="mine", harness_register_learners=hookimpl(
        lambda register: register(Learner(name="scaler", train=train, defaults={"scale": 2.0, "epochs": 1},
                                          check=check)))))
    registry = load_registry()
    model = registry.models.get("repu").build({**registry.models.get("repu").defaults, "hidden": 8},
                                              harness_dataset.info)
    before = model.fc1.weight.detach().clone()
    d = harness_dataset
    spec, ctx = stage_context("scaler", model, (d.x, d.y, d.x_test, d.y_test), ("fc1.weight",), seed=4, scale=3.0)
    assert spec.train(ctx) == {"history": [{"epoch": 1}]}
    assert seen == {"options": {"scale": 3.0, "epochs": 1}, "params": ["fc1.weight"], "n": 1438, "seed": 4}
    assert torch.equal(model.fc1.weight, before * 3.0)
    with pytest.raises(ValueError, match="scale: expected a positive number"):
        stage_context("scaler", model, (d.x, d.y, d.x_test, d.y_test), scale=-1.0)
