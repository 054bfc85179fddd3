"""The plugin manager: built-in entry points, third-party plugins, env vars, and the contract itself."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from harness import PROJECT, hookimpl, hookspecs
from harness.api import Attack, DataInfo, Dataset, Defense, Learner, Model
from harness.errors import PluginError
from harness.plugins import entry_points, load_registry, make_manager

ROOT = Path(__file__).parents[2]
DIST = "robustness-harness"

BUILT_INS = {
    "datasets": {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "digits": "digits", "cifar10": "cifar10"},
    "learners": {"hebbian": "hebbian", "backprop": "backprop", "random": "random", "oja": "oja",
                 "adversarial": "adversarial", "pepita": "pepita", "bcm": "bcm",
                 **{mode: "biotorch" for mode in ("fa", "dfa", "usf", "brsf", "frsf")}},
    "models": {"repu": "repu", "external": "external"},
    "attacks": {**{f"{name}@torchattacks": "torchattacks" for name in (
                    "fgsm", "bim", "pgd", "pgd-l2", "cw", "deepfool", "apgd-ce", "apgd-dlr", "apgd-t", "fab",
                    "square", "autoattack")},
                **{f"{name}@art": "art" for name in (
                    "fgsm", "pgd", "cw", "deepfool", "hopskipjump", "square", "autoattack")},
                "noise@torch": "noise", "representation@torch": "adaptive", "transfer@torch": "adaptive", "noise-l2@torch": "noise"},
    "defenses": {"logit-scale": "rescale"},
    "executors": {"local": "local", "ray": "ray"},
}
# The built-in plugins are the entry points pyproject.toml declares: the installed distribution must
# list the same ones (a stale editable install fails test_entry_points_are_the_built_in_plugins).
PLUGIN_MODULES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["harness"]


def hookspec_functions() -> dict[str, object]:
    """The hook specifications of harness/hookspecs.py, found by pluggy's marker."""
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, f"{PROJECT}_spec")}


def make_plugin(name: str, **hooks) -> types.ModuleType:
    """A module-like third-party plugin whose functions are marked with harness.hookimpl."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


# ---------------------------------------------------------------------------------------------
# built-ins


def test_entry_points_are_the_built_in_plugins():
    ours = {ep.name: ep.value for ep in entry_points() if ep.dist is not None and ep.dist.name == DIST}
    assert ours == PLUGIN_MODULES


def test_real_registry_lists_every_built_in(registry):
    for kind, expected in BUILT_INS.items():
        entries = {e.key: e for e in registry[kind].entries()}
        assert {key: e.plugin for key, e in entries.items()} == expected, kind
        for entry in entries.values():
            assert entry.distribution == DIST
            assert entry.kind == kind
            assert entry.obj.description  # `harness plugins` shows it


def test_built_in_records_have_their_types(registry):
    assert registry.datasets.get("mnist").info.input_shape == (1, 28, 28)
    assert registry.datasets.get("mnist").info.num_classes == 10
    assert isinstance(registry.learners.get("hebbian"), Learner)
    assert isinstance(registry.models.get("repu"), Model)
    assert isinstance(registry.defenses.get("logit-scale"), Defense)
    for key in BUILT_INS["attacks"]:
        name, backend = key.split("@")
        assert registry.attacks.get(name, backend).backend == backend


def test_built_in_defaults_pass_their_own_checks(registry):
    """A suite that sets nothing must validate: every default satisfies the plugin's check."""
    for kind in ("learners", "models", "attacks", "defenses"):
        for entry in registry[kind].entries():
            if entry.obj.check is not None:
                entry.obj.check(dict(entry.obj.defaults))


def test_no_entry_points_gives_an_empty_registry():
    registry = load_registry(load_entry_points=False)
    for kind in BUILT_INS:
        assert registry[kind].names() == []


# ---------------------------------------------------------------------------------------------
# third-party plugins


def _train(ctx):
    return {"history": []}


def _build_attack(model, eps, options):
    return lambda x, y: x


def test_a_plugin_registering_every_kind():
    calls = []

    def datasets(register):
        calls.append("datasets")
        register(Dataset(name="toy", fetch=lambda root: [], load=lambda root, train: (None, None),
                         info=DataInfo((3,), 2, 0.0, 1.0), fingerprint="toy:0"))

    def learners(register):
        calls.append("learners")
        register(Learner(name="toy-rule", train=_train, defaults={"lr": 0.1}))

    def models(register):
        calls.append("models")
        register(Model(name="linear", build=lambda options, info: None))

    def attacks(register):
        calls.append("attacks")
        register(Attack(name="toy-noise", backend="mine", build=_build_attack))
        register(Attack(name="pgd", backend="mine", build=_build_attack))

    def defenses(register):
        calls.append("defenses")
        register(Defense(name="clip", wrap=lambda model, options: model))

    plugin = make_plugin("harness_toy", harness_register_datasets=datasets, harness_register_learners=learners,
                         harness_register_models=models, harness_register_attacks=attacks,
                         harness_register_defenses=defenses)
    registry = load_registry(extra=[plugin])
    assert sorted(calls) == ["attacks", "datasets", "defenses", "learners", "models"]  # each hook once
    assert registry.learners.get("toy-rule").defaults == {"lr": 0.1}
    assert registry.learners.get("toy-rule").train is _train
    assert registry.attacks.get("toy-noise", None).build is _build_attack
    assert registry.datasets.get("toy").fingerprint == "toy:0"
    assert registry.models.get("linear").name == "linear"
    assert registry.defenses.get("clip").name == "clip"
    mine = {e.key: (e.plugin, e.distribution) for kind in BUILT_INS for e in registry[kind].entries()
            if e.plugin == "harness_toy"}
    assert mine == {"toy": ("harness_toy", None), "toy-rule": ("harness_toy", None), "linear": ("harness_toy", None),
                    "toy-noise@mine": ("harness_toy", None), "pgd@mine": ("harness_toy", None),
                    "clip": ("harness_toy", None)}
    # built-ins are still there, and pgd now has three backends
    assert registry.learners.names() == sorted([*BUILT_INS["learners"], "toy-rule"])
    with pytest.raises(Exception, match="art, mine, torchattacks"):
        registry.attacks.get("pgd", None)


def test_a_namespace_plugin_without_entry_points():
    plugin = types.SimpleNamespace(
        __name__="ns_plugin",
        harness_register_learners=hookimpl(lambda register: register(Learner(name="sgd", train=_train))))
    registry = load_registry(extra=[plugin], load_entry_points=False)
    (entry,) = registry.learners.entries()
    assert (entry.key, entry.plugin, entry.distribution) == ("sgd", "ns_plugin", None)


def test_a_class_plugin():
    class Plugin:
        __name__ = "class_plugin"

        @hookimpl
        def harness_register_attacks(self, register):
            register(Attack(name="noise", backend="numpy", build=_build_attack))

    registry = load_registry(extra=[Plugin()], load_entry_points=False)
    (entry,) = registry.attacks.entries()
    assert (entry.key, entry.plugin) == ("noise@numpy", "class_plugin")


def test_a_plugin_colliding_with_a_built_in_names_both():
    plugin = make_plugin("harness_other_backprop",
                         harness_register_learners=lambda register: register(Learner(name="backprop", train=_train)))
    with pytest.raises(PluginError) as info:
        load_registry(extra=[plugin])
    message = str(info.value)
    assert "learner 'backprop' registered twice" in message
    assert "'backprop'" in message and "'harness_other_backprop'" in message


def _fake_art():
    return make_plugin("harness_fake_art", harness_register_attacks=lambda register: register(
        Attack(name="fgsm", backend="art", build=_build_attack)))


def test_a_plugin_colliding_with_a_built_in_attack_backend():
    with pytest.raises(PluginError) as info:
        load_registry(extra=[_fake_art()])
    message = str(info.value)
    assert "attack 'fgsm@art' registered twice" in message
    assert "plugin 'art'" in message and "plugin 'harness_fake_art'" in message


def test_blocking_the_built_in_resolves_the_collision(monkeypatch):
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "art")
    registry = load_registry(extra=[_fake_art()])
    assert {e.key: e.plugin for e in registry.attacks.entries()} == {
        "fgsm@art": "harness_fake_art",
        **{k: v for k, v in BUILT_INS["attacks"].items() if v != "art"}}


def test_duplicate_message_names_the_plugin_pluggy_called_first():
    # pluggy calls the implementations registered last first: the test plugin, then the entry points
    with pytest.raises(PluginError, match=r"'fgsm@art' registered twice: by plugin 'harness_fake_art' and by "
                                          r"plugin 'art'"):
        load_registry(extra=[_fake_art()])


def test_a_plugin_handing_the_wrong_record_names_itself():
    plugin = make_plugin("harness_confused",
                         harness_register_learners=lambda register: register(Model(name="x", build=None)))
    with pytest.raises(PluginError) as info:
        load_registry(extra=[plugin])
    assert "'harness_confused'" in str(info.value) and "harness.api.Learner" in str(info.value)


def test_a_misspelled_hook_fails_loudly():
    def harness_register_learner(register):  # the s is missing
        register(Learner(name="lost", train=_train))

    plugin = make_plugin("harness_typo", harness_register_learner=harness_register_learner)
    with pytest.raises(PluginError) as info:
        load_registry(extra=[plugin])
    message = str(info.value)
    assert "harness_register_learner'" in message
    assert "hookspecs" in message
    assert "\n" not in message


def test_a_misspelled_hook_argument_fails_with_plugin_error():
    def harness_register_learners(regster):
        regster(Learner(name="lost", train=_train))

    plugin = make_plugin("harness_arg_typo", harness_register_learners=harness_register_learners)
    with pytest.raises(PluginError):
        load_registry(extra=[plugin])


# ---------------------------------------------------------------------------------------------
# HARNESS_LOAD_PLUGINS / HARNESS_BLOCK_PLUGINS


def test_load_only_some_plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "mnist, repu")
    registry = load_registry()
    assert registry.datasets.names() == ["mnist"]
    assert registry.models.names() == ["repu"]
    assert registry.learners.names() == []
    assert registry.attacks.names() == []
    assert registry.defenses.names() == []


def test_block_a_plugin(monkeypatch):
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "art")
    registry = load_registry()
    assert registry.attacks.names() == sorted(k for k, v in BUILT_INS["attacks"].items() if v != "art")
    assert registry.learners.names() == sorted(BUILT_INS["learners"])
    assert registry.defenses.names() == ["logit-scale"]


def test_block_wins_over_load(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "art,torchattacks")
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "torchattacks")
    assert load_registry().attacks.names() == sorted(k for k, v in BUILT_INS["attacks"].items() if v == "art")


def test_without_env_vars_all_entry_points_load(monkeypatch):
    monkeypatch.delenv("HARNESS_LOAD_PLUGINS")
    registry = load_registry()
    for kind, expected in BUILT_INS.items():
        assert set(expected) <= set(registry[kind].names())


@pytest.mark.parametrize("var", ["HARNESS_LOAD_PLUGINS", "HARNESS_BLOCK_PLUGINS"])
def test_unknown_plugin_name_in_env_var(monkeypatch, var):
    monkeypatch.setenv(var, "mnist,torchatacks")
    with pytest.raises(PluginError) as info:
        load_registry()
    message = str(info.value)
    assert "'torchatacks'" in message and "did you mean 'torchattacks'" in message
    assert var in message


# ---------------------------------------------------------------------------------------------
# meta-tests: the contract itself


def test_hookspecs_are_documented_and_prefixed():
    specs = hookspec_functions()
    assert len(specs) >= 5
    for name, function in specs.items():
        assert name.startswith("harness_"), name
        assert (function.__doc__ or "").strip(), f"hookspec {name} has no docstring"
    # nothing in hookspecs.py that looks like a hook lacks the marker
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("harness_"):
            assert name in specs, name


def test_every_hookspec_is_implemented_by_a_built_in():
    pm = make_manager()
    own = set(PLUGIN_MODULES)
    for name in hookspec_functions():
        implementers = {impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()}
        assert implementers & own, f"no built-in plugin implements {name}"


def test_every_built_in_plugin_implements_a_hookspec():
    pm = make_manager()
    specs = set(hookspec_functions())
    for plugin_name in PLUGIN_MODULES:
        plugin = pm.get_plugin(plugin_name)
        assert plugin is not None, plugin_name
        assert {caller.name for caller in pm.get_hookcallers(plugin)} & specs, plugin_name


def test_core_never_imports_a_built_in_plugin():
    pattern = re.compile(r"^\s*(import|from)\s+harness_\w+", re.MULTILINE)
    modules = set(PLUGIN_MODULES.values())
    sources = sorted((ROOT / "harness").rglob("*.py"))
    assert sources
    for source in sources:
        text = source.read_text()
        assert not pattern.search(text), f"{source} imports a plugin module"
        for module in modules:
            assert f"import_module(\"{module}\")" not in text and f"import_module('{module}')" not in text


def test_every_hookspec_is_mentioned_by_a_test():
    """A hook nobody tests fails here. This test's own text does not count."""
    own_source = inspect.getsource(test_every_hookspec_is_mentioned_by_a_test)
    texts = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        if path.name == Path(__file__).name:
            text = text.replace(own_source, "")
        texts.append(text)
    corpus = "\n".join(texts)
    untested = [name for name in hookspec_functions() if name not in corpus]
    assert not untested, f"hooks no test mentions: {untested}"


def test_importing_the_cli_and_plugins_does_not_import_torch():
    modules = ", ".join(["harness.cli", "harness.plugins", "harness.suite.load", "harness.registry", "harness.api",
                         *PLUGIN_MODULES.values()])
    code = (f"import sys; import {modules}; from harness.plugins import load_registry; "
            f"load_registry(); heavy = [m for m in ('torch', 'torchvision', 'torchattacks', 'art', 'numpy') "
            f"if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


# ---------------------------------------------------------------------------------------------
# hooks are called through pluggy, in its order, and pluggy is left as it is


def defense_plugin(name, calls, **order):
    def harness_register_defenses(register):
        calls.append(name)
        register(Defense(name=name, wrap=lambda model, options: model))
    module = types.ModuleType(name)
    module.harness_register_defenses = hookimpl(**order)(harness_register_defenses)
    return module


def test_register_hooks_follow_pluggys_order():
    calls = []
    # registered in this order; pluggy calls the last registered first, tryfirst before and trylast after
    plugins = [defense_plugin("late", calls, trylast=True), defense_plugin("early", calls, tryfirst=True),
               defense_plugin("plain1", calls), defense_plugin("plain2", calls)]
    registry = load_registry(extra=plugins, load_entry_points=False)
    assert calls == ["early", "plain2", "plain1", "late"]
    assert {e.key: e.plugin for e in registry.defenses.entries()} == {
        "early": "early", "plain1": "plain1", "plain2": "plain2", "late": "late"}


def test_a_register_hook_wrapper_is_an_error_naming_its_plugin():
    class Wrapper:
        __name__ = "wrapper"

        @hookimpl(wrapper=True)
        def harness_register_defenses(self, register):
            return (yield)

    with pytest.raises(PluginError, match="plugin 'wrapper' implements harness_register_defenses as a hook "
                                          "wrapper; register hooks return nothing to wrap"):
        load_registry(extra=[defense_plugin("plain", []), Wrapper()], load_entry_points=False)


def test_loading_leaves_pluggys_hook_implementations_as_they_are():
    from harness.plugins import Plugins, build_registry, make_manager

    pm = make_manager()
    before = {(name, id(impl)): impl.function for name in pm.hook.__dict__ if name.startswith("harness_")
              for impl in getattr(pm.hook, name).get_hookimpls()}
    build_registry(Plugins(pm))
    after = {(name, id(impl)): impl.function for name in pm.hook.__dict__ if name.startswith("harness_")
             for impl in getattr(pm.hook, name).get_hookimpls()}
    assert before and after == before
    assigning = [p for p in sorted((ROOT / "harness").rglob("*.py")) if re.search(r"\.function\s*=[^=]", p.read_text())]
    assert not assigning, f"the core assigns to a hook implementation's function in {assigning}"


def test_register_outside_the_hook_is_an_error():
    kept = []

    def harness_register_defenses(register):
        kept.append(register)
    load_registry(extra=[make_plugin("keeper", harness_register_defenses=harness_register_defenses)],
                  load_entry_points=False)
    with pytest.raises(PluginError, match="called after the hook returned"):
        kept[0](Defense(name="late", wrap=lambda model, options: model))


# ---------------------------------------------------------------------------------------------
# the core names no plugin, and plugins use the core's public modules, never its CLI


def test_plugins_never_import_the_cli():
    pattern = re.compile(r"\bharness\.cli\b|from harness import cli\b")
    sources = [p for p in sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
               if "tests" not in p.relative_to(ROOT).parts]  # a plugin's own tests may drive the CLI
    assert sources
    offenders = [str(p.relative_to(ROOT)) for p in sources if pattern.search(p.read_text())]
    assert not offenders, f"import shared options from harness.kit.cli_options instead: {offenders}"


def _string_values(tree) -> set[str]:
    """The string constants of a module's code, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_the_core_names_no_built_in_defense_executor_or_attack_library():
    """Records say what they are (Defense.rescaler and temperature_option, Executor.default,
    Attack.requires); the core asks them instead of naming them."""
    registry = load_registry()
    names = {e.key for kind in ("defenses", "executors") for e in registry[kind].entries()}
    names |= {d for e in registry.attacks.entries() for d in e.obj.requires}
    assert {"logit-scale", "local", "torchattacks"} <= names
    for source in sorted((ROOT / "harness").rglob("*.py")):
        text = source.read_text()
        assert "logit-scale" not in text, source.name
        named = names & _string_values(ast.parse(text))
        assert not named, (source.name, named)
