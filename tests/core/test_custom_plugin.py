"""A plugin written in a test, through the public API only, is usable in a suite; a plugin that
raises costs its own cells, not the run."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from harness import hookimpl
from harness.api import Attack, Defense
from harness.plugins import load_registry
from harness.run.runner import Runner
from harness.suite.load import load_suite
from suite_builder import DROP, backprop, changed, repu, suite, torchattacks


class NoisePlugin:
    """A random-sign perturbation 'attack' and an input-quantisation 'defense'."""

    @hookimpl
    def harness_register_attacks(self, register):
        def build(model, eps, options):
            def attack(x, y):
                noise = torch.randint(0, 2, x.shape, device=x.device).float() * 2 - 1
                return (x + eps * options["scale"] * noise).clamp(0, 1)
            return attack
        register(Attack(name="sign-noise", backend="test", build=build, defaults={"scale": 1.0},
                        description="random +-eps noise"))

        def broken(model, eps, options):
            def attack(x, y):
                raise RuntimeError("this attack always fails")
            return attack
        register(Attack(name="broken", backend="test", build=broken, description="raises"))

    @hookimpl
    def harness_register_defenses(self, register):
        def wrap(model, options):
            levels = options["levels"]

            class Quantise(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.model = model

                def forward(self, x):
                    return self.model(torch.round(x * levels) / levels)
            return Quantise()
        register(Defense(name="quantise", wrap=wrap, defaults={"levels": 4}, description="round pixels"))


SUITE = suite(train_size=2000, test_size=200, models={"bp": repu(32, backprop(epochs=2), power=1.0, beta=1.0)},
              defenses={"q": {"defense": "quantise", "levels": 2}},
              attacks={"noise": {"attack": "sign-noise", "scale": 1.0}, "broken": {"attack": "broken"},
                       "pgd": torchattacks("pgd", steps=5)},
              grid={"model": ["bp"], "defense": ["none", "q"], "attack": ["noise", "broken", "pgd"], "eps": [0.3]})


def test_test_plugin_runs_in_a_suite(mnist_root, write_suite, tmp_path):
    registry = load_registry(extra=[NoisePlugin()])
    entries = {e.key: e for e in registry.attacks.entries()}
    assert entries["sign-noise@test"].plugin.startswith("NoisePlugin") or entries["sign-noise@test"].plugin
    suite = load_suite(write_suite(SUITE), registry)
    frame = Runner(suite, registry, tmp_path / "out", mnist_root, torch.device("cpu")).run()
    frame = frame[frame["attack"] != "worst-case"]
    assert len(frame) == 6
    ok = frame[frame["status"] == "ok"]
    assert set(ok["attack"]) == {"noise", "pgd"} and len(ok) == 4
    broken = frame[frame["attack"] == "broken"]
    assert (broken["status"] == "error").all()
    assert broken["error"].str.contains("this attack always fails").all()
    noise = ok[(ok["attack"] == "noise") & (ok["defense"] == "none")].iloc[0]
    pgd = ok[(ok["attack"] == "pgd") & (ok["defense"] == "none")].iloc[0]
    assert pgd.robust_acc <= noise.robust_acc <= noise.clean_acc
    assert noise.clean_acc > 0.7
    quantised = ok[ok["defense"] == "q"].iloc[0]
    assert quantised.defense_name == "quantise" and quantised["T"] == 1.0


def test_failed_cells_make_the_cli_exit_1(mnist_root, write_suite, tmp_path, monkeypatch):
    """The CLI loads plugins from entry points only; inject the test plugin into its registry."""
    import harness.plugins

    real = harness.plugins.load_registry
    monkeypatch.setattr(harness.plugins, "load_registry", lambda extra=(), **kw: real(extra=[NoisePlugin()]))
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    from harness.cli import cli

    path = write_suite(changed(SUITE, {"grid.attack": ["broken", "noise"]}))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "2 cell(s) failed" in result.output
    assert "Traceback" not in result.output


def test_unknown_option_of_a_test_plugin_is_a_suite_error(write_suite):
    from harness.errors import SuiteError

    registry = load_registry(extra=[NoisePlugin()])
    with pytest.raises(SuiteError, match=r"attacks\.noise\.scal: unknown parameter 'scal'.*did you mean 'scale'"):
        load_suite(write_suite(changed(SUITE, {"attacks.noise.scale": DROP, "attacks.noise.scal": 1.0})), registry)
