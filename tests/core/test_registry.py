"""The typed registry: suggestions, type checks, duplicates, attack lookup by name and backend."""

from __future__ import annotations

import pytest

from harness.api import Attack, DataInfo, Dataset, Defense, Learner, Model
from harness.errors import HarnessError, PluginError, RegistryError
from harness.registry import Registry, did_you_mean


def _learner(name="hebb", **kw):
    return Learner(name=name, train=lambda ctx: {}, **kw)


def _attack(name="pgd", backend="lib"):
    return Attack(name=name, backend=backend, build=lambda model, eps, options: None)


def _model(name="mlp"):
    return Model(name=name, build=lambda options, info: None)


def _dataset(name="digits"):
    return Dataset(name=name, fetch=lambda root: [], load=lambda root, train: (None, None),
                   info=DataInfo((1, 2, 2), 3, 0.5, 0.25), fingerprint="digits:1")


def _defense(name="scale"):
    return Defense(name=name, wrap=lambda model, options: model)


# ---------------------------------------------------------------------------------------------
# did_you_mean


def test_did_you_mean_suggests_the_closest_choice():
    assert did_you_mean("pgdd", ["fgsm", "pgd"]) == "; did you mean 'pgd'?"
    assert did_you_mean("hebbain", ["backprop", "hebbian"]) == "; did you mean 'hebbian'?"
    assert did_you_mean("mnsit", ["mnist"]) == "; did you mean 'mnist'?"


def test_did_you_mean_lists_choices_when_nothing_is_close():
    assert did_you_mean("zzz", ["pgd", "fgsm", "pgd"]) == "; expected one of: fgsm, pgd"


def test_did_you_mean_with_no_choices():
    assert did_you_mean("x", []) == "; expected one of: (none registered)"


def test_did_you_mean_accepts_any_iterable():
    assert did_you_mean("alpah", {"alpha": 1, "steps": 2}) == "; did you mean 'alpha'?"
    assert did_you_mean("x", (c for c in ["b", "a"])) == "; expected one of: a, b"


# ---------------------------------------------------------------------------------------------
# register


@pytest.mark.parametrize("kind, obj, expected", [
    ("learners", _attack(), "Learner"),
    ("attacks", _learner(), "Attack"),
    ("models", _dataset(), "Model"),
    ("datasets", _model(), "Dataset"),
    ("defenses", object(), "Defense"),
    ("learners", {"name": "hebb", "train": None}, "Learner"),
])
def test_register_rejects_the_wrong_record_type(kind, obj, expected):
    registry = Registry()
    with pytest.raises(PluginError) as info:
        registry[kind].add(obj, "my-plugin")
    message = str(info.value)
    assert "'my-plugin'" in message
    assert f"harness.api.{expected}" in message
    assert f"harness_register_{kind}" in message
    assert type(obj).__name__ in message
    assert registry[kind].names() == []


@pytest.mark.parametrize("name", ["", None, 3])
def test_register_rejects_a_record_without_a_name(name):
    with pytest.raises(PluginError) as info:
        Registry().learners.add(_learner(name=name), "my-plugin")
    assert "'my-plugin'" in str(info.value) and "learner" in str(info.value)


def test_register_duplicate_names_both_plugins():
    registry = Registry()
    registry.learners.add(_learner("hebb"), "first-plugin", "dist-a")
    with pytest.raises(PluginError) as info:
        registry.learners.add(_learner("hebb"), "second-plugin")
    message = str(info.value)
    assert "learner 'hebb'" in message
    assert "'first-plugin'" in message and "'second-plugin'" in message
    assert "HARNESS_BLOCK_PLUGINS" in message
    # the first registration stays
    assert [e.plugin for e in registry.learners.entries()] == ["first-plugin"]


def test_same_attack_name_with_two_backends_is_not_a_duplicate():
    registry = Registry()
    registry.attacks.add(_attack("pgd", "a"), "plug-a")
    registry.attacks.add(_attack("pgd", "b"), "plug-b")
    assert registry.attacks.names() == ["pgd@a", "pgd@b"]
    with pytest.raises(PluginError) as info:
        registry.attacks.add(_attack("pgd", "b"), "plug-c")
    assert "'pgd@b'" in str(info.value) and "'plug-b'" in str(info.value) and "'plug-c'" in str(info.value)


def test_same_name_in_different_kinds_is_fine():
    registry = Registry()
    registry.learners.add(_learner("x"), "p")
    registry.models.add(_model("x"), "p")
    registry.defenses.add(_defense("x"), "p")
    registry.datasets.add(_dataset("x"), "p")
    assert registry.models.get("x").build is not None
    assert isinstance(registry.learners.get("x"), Learner)


def test_entries_record_plugin_and_distribution_sorted_by_key():
    registry = Registry()
    registry.learners.add(_learner("zeta"), "pz", "dist-z")
    registry.learners.add(_learner("alpha"), "pa")
    entries = list(registry.learners.entries())
    assert [(e.key, e.plugin, e.distribution, e.kind) for e in entries] == [
        ("alpha", "pa", None, "learners"), ("zeta", "pz", "dist-z", "learners")]
    assert registry.learners.names() == ["alpha", "zeta"]
    assert entries[1].obj.name == "zeta"


# ---------------------------------------------------------------------------------------------
# get and attack lookup


def test_get_returns_the_registered_object():
    registry = Registry()
    learner = _learner("hebb")
    registry.learners.add(learner, "p")
    assert registry.learners.get("hebb") is learner


def test_get_unknown_name_suggests():
    registry = Registry()
    registry.learners.add(_learner("hebbian"), "p")
    registry.learners.add(_learner("backprop"), "p")
    with pytest.raises(RegistryError, match=r"^unknown learner 'hebbain'; did you mean 'hebbian'\?$"):
        registry.learners.get("hebbain")
    with pytest.raises(RegistryError, match=r"^unknown learner 'zzz'; expected one of: backprop, hebbian$"):
        registry.learners.get("zzz")


def test_get_in_an_empty_registry():
    with pytest.raises(RegistryError, match=r"unknown dataset 'mnist'; expected one of: \(none registered\)"):
        Registry().datasets.get("mnist")


def test_registry_errors_are_harness_errors():
    assert issubclass(RegistryError, HarnessError) and issubclass(PluginError, HarnessError)


def test_attack_unknown_name_suggests(registry):
    with pytest.raises(RegistryError) as info:
        registry.attacks.get("pgdd", None)
    assert str(info.value) == "unknown attack 'pgdd'; did you mean 'pgd'?"
    with pytest.raises(RegistryError, match=r"^unknown attack 'pgdd'; did you mean 'pgd'\?$"):
        registry.attacks.get("pgdd", "torchattacks")  # the name is checked before the backend


def test_attack_ambiguous_without_backend(registry):
    with pytest.raises(RegistryError) as info:
        registry.attacks.get("pgd", None)
    message = str(info.value)
    assert "attack 'pgd' is provided by backends art, torchattacks" in message
    assert 'backend = "art"' in message


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("backend", ["art", "torchattacks"])
def test_attack_with_backend(registry, name, backend):
    attack = registry.attacks.get(name, backend)
    assert isinstance(attack, Attack)
    assert (attack.name, attack.backend) == (name, backend)


def test_attack_unknown_backend(registry):
    with pytest.raises(RegistryError) as info:
        registry.attacks.get("pgd", "torchatacks")
    assert str(info.value) == "attack 'pgd' has no backend 'torchatacks'; did you mean 'torchattacks'?"
    with pytest.raises(RegistryError, match=r"has no backend 'foolbox'; expected one of: art, torchattacks"):
        registry.attacks.get("fgsm", "foolbox")


def test_attack_without_backend_when_only_one_provides_it():
    registry = Registry()
    only = _attack("cw", "lib-a")
    registry.attacks.add(only, "p")
    registry.attacks.add(_attack("pgd", "lib-a"), "p")
    registry.attacks.add(_attack("pgd", "lib-b"), "q")
    assert registry.attacks.get("cw", None) is only
    assert registry.attacks.get("cw", "lib-a") is only
    with pytest.raises(RegistryError, match="has no backend 'lib-b'"):
        registry.attacks.get("cw", "lib-b")
    with pytest.raises(RegistryError, match="lib-a, lib-b"):
        registry.attacks.get("pgd", None)


def test_attack_without_backend_after_blocking_one_backend(monkeypatch):
    from harness.plugins import load_registry

    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "art")
    registry = load_registry()
    assert registry.attacks.get("pgd", None).backend == "torchattacks"
    assert registry.attacks.get("fgsm", None).backend == "torchattacks"
