"""One option resolution (harness.suite.resolve) behind suite tables, --executor-option and a figure's
--option: the same defaults, presets, types, words for true and false, and errors."""

from __future__ import annotations

import pytest

from harness import hookimpl
from harness.api import Executor
from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.run.executor import parse_executor_options, pick_executor
from harness.suite.resolve import FALSE, TRUE, OptionError, parse_text, resolve_options
from harness_figures.gallery import attack_options


@pytest.mark.parametrize("word, value", [(w, True) for w in TRUE] + [(w.upper(), True) for w in TRUE]
                         + [(w, False) for w in FALSE] + [(f" {w} ", False) for w in FALSE])
def test_one_set_of_words_for_true_and_false(word, value):
    assert parse_text(word, False) is value


def test_text_is_typed_like_the_default():
    assert parse_text("3", 0) == 3 and parse_text("0.5", 1.0) == 0.5 and parse_text("3", 1.0) == 3
    assert parse_text("maybe", True) == "maybe"  # left for coerce_option to report


def executor_plugin():
    class Plugin:
        @hookimpl
        def harness_register_executors(self, register):
            register(Executor(name="flags", run=lambda plan, options: iter(()),
                              defaults={"verbose": False, "workers": 1, "rate": 0.5}))
    return Plugin()


@pytest.mark.parametrize("word, value", [("yes", True), ("1", True), ("true", True), ("no", False), ("0", False)])
def test_executor_options_and_figure_options_read_words_alike(harness_plugin, word, value):
    harness_plugin(executor_plugin())
    registry = load_registry()
    assert parse_executor_options(pick_executor(registry, "flags"), (f"verbose={word}", "workers=3"))["verbose"] is value
    pgd = registry.attacks.get("pgd", "torchattacks")
    assert attack_options(pgd, [f"random_start={word}"], "attack 'pgd'")["random_start"] is value


def test_the_same_bad_value_gives_the_same_message_everywhere(harness_plugin, write_suite):
    harness_plugin(executor_plugin())
    registry = load_registry()
    with pytest.raises(HarnessError) as executor:
        parse_executor_options(pick_executor(registry, "flags"), ("verbose=maybe",))
    with pytest.raises(HarnessError) as figure:
        attack_options(registry.attacks.get("pgd", "torchattacks"), ["random_start=maybe"], "attack 'pgd'")
    with pytest.raises(OptionError) as direct:
        resolve_options(registry.attacks.get("pgd", "torchattacks"), {"random_start": "maybe"}, "attack 'pgd'")
    expected = "expected true or false, got a string ('maybe')"
    assert str(executor.value) == f"--executor-option verbose: {expected}"
    assert str(figure.value) == f"--option random_start=maybe: {expected}"
    assert str(direct.value) == f"random_start: {expected}"


def test_presets_and_unknown_keys_resolve_alike():
    registry = load_registry()
    hebbian = registry.learners.get("hebbian")
    preset, options = next(iter(hebbian.presets.items()))
    assert resolve_options(hebbian, {"preset": preset}, "learner 'hebbian'") == {**hebbian.defaults, **options}
    with pytest.raises(OptionError, match=r"^epoch: unknown parameter 'epoch' for learner 'hebbian'; "
                                          r"did you mean 'epochs'\?"):
        resolve_options(hebbian, {"epoch": 3}, "learner 'hebbian'")


def test_two_names_for_one_configuration_are_one_line_before_any_work(write_suite, tmp_path):
    """Two model tables that are identical would give two cells one hash: the run refuses the suite, naming
    both tables, with exit code 2 and nothing written (before, the executor failed mid-run)."""
    from click.testing import CliRunner

    from harness.cli import cli
    from suite_builder import backprop, repu, suite, torchattacks

    path = write_suite(suite(models={"a": repu(8, backprop(epochs=1)), "b": repu(8, backprop(epochs=1)),
                                     "c": repu(9, backprop(epochs=1))},
                             attacks={"fgsm": torchattacks("fgsm")},
                             grid={"model": ["a", "b", "c"], "attack": ["fgsm"], "eps": [0.0, 0.1]}))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--no-cache"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(
        f"error: {path}: models.a and models.b: the same configuration under two names (cell hash ")
    assert "remove one of the tables or make them differ" in result.output
    assert not (out / "results.csv").exists()
