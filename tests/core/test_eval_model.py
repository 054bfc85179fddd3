"""``harness eval``, ``harness.eval_model`` and the ``external`` model plugin, on a model trained
nowhere: a nearest-class-mean classifier written as a linear layer (its weights are the class means
of 2 000 MNIST training images), defined in a temporary module and saved with safetensors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import harness
from harness.cli import cli
from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.results.table import read_results
from harness.suite.load import config_hash, load_suite
from harness.suite.tomlwrite import to_toml
from harness.testing import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 20  # test images: AutoAttack on a linear model over 20 images takes seconds

MODULE = '''
import torch
from torch import nn


class Centroids(nn.Module):
    """Nearest class mean: logit_c = x . mu_c - |mu_c|^2 / 2, as one linear layer."""

    def __init__(self, pixels=784, classes=10):
        super().__init__()
        self.linear = nn.Linear(pixels, classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


def build(pixels=784, classes=10):
    return Centroids(pixels, classes)


def three_classes():
    return Centroids(784, 3)


def unflattened():
    return nn.Linear(784, 10)


def not_a_module():
    return "a string"
'''


@pytest.fixture
def model_dir(tmp_path, mnist_small, monkeypatch):
    """tmp_path holding tinynet.py (on sys.path), tinynet.safetensors (the centroid weights) and a
    module whose import fails for want of a package."""
    x_train, y_train, _, _ = mnist_small
    (tmp_path / "tinynet.py").write_text(MODULE)
    (tmp_path / "broken_dep.py").write_text("import not_installed_package_h3\n\ndef build():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tinynet", None)
    import tinynet

    x, y = x_train[:2000].flatten(1), y_train[:2000]
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    net = tinynet.build()
    with torch.no_grad():
        net.linear.weight.copy_(means)
        net.linear.bias.copy_(-0.5 * (means ** 2).sum(1))
    save_file(net.state_dict(), str(tmp_path / "tinynet.safetensors"))
    return tmp_path


def own_accuracy(net, mnist_small, n=N) -> float:
    _, _, x_test, y_test = mnist_small
    with torch.no_grad():
        return int((net(x_test[:n]).argmax(1) == y_test[:n]).sum()) / len(y_test[:n])


def load_net(model_dir):
    import tinynet
    from safetensors.torch import load_file

    net = tinynet.build()
    net.load_state_dict(load_file(str(model_dir / "tinynet.safetensors")))
    return net.eval()


@pytest.fixture
def runner(mnist_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(mnist_root))
    return CliRunner()


@pytest.mark.slow
def test_harness_eval_of_a_factory_model_gives_its_own_clean_accuracy_and_autoattack_rows(
        model_dir, mnist_root, mnist_small, tmp_path, runner):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(model_dir), "HARNESS_DATA": str(mnist_root)}
    done = subprocess.run(["harness", "eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                           "--eps", "0.1", "--n", str(N), "--out", str(out), "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    frame = read_results(out)
    cells = frame[frame["attack"] != "worst-case"]
    assert (cells["status"] == "ok").all() and set(cells["n"]) == {N}
    expected = own_accuracy(load_net(model_dir), mnist_small)
    assert expected > 0.5  # a real classifier, so the attacks have something to break
    assert cells["clean_acc"].tolist() == pytest.approx([expected] * len(cells), abs=1e-6)
    assert set(cells["attack"]) == {"autoattack", "apgd-dlr", "square", "pgd", "fgsm", "noise"}
    assert set(cells["architecture"]) == {"external"} and set(cells["defense"]) == {"Tauto"}
    autoattack = cells[cells["attack"] == "autoattack"].iloc[0]
    assert autoattack.eps == 0.1 and autoattack.robust_acc <= expected
    worst = frame[(frame["attack"] == "worst-case") & (frame["eps"] == 0.1)].iloc[0]
    assert worst.robust_acc <= cells[cells["eps"] == 0.1]["robust_acc"].min()
    assert set(cells[cells["eps"] == 0.5]["attack"]) == set(cells["attack"])  # the large-budget check ran
    assert worst.checks_skipped == ""  # every masking check could be evaluated
    assert "autoattack" in done.stdout and "worst-case" in done.stdout and "tinynet / Tauto:" in done.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["suite"]["copy"] == "suite.toml" and "factory" in (out / "suite.toml").read_text()
    assert (record["suite"]["path"], record["suite"]["relative_to"]) == ("suite.toml", "run directory")

    # the run directory is an ordinary one: its suite.toml continues it, nothing left to do
    again = runner.invoke(cli, ["run", str(out / "suite.toml"), "--out", str(out), "--device", "cpu", "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "run.json").read_text())["runs"][-1]["cells_todo"] == 0

    # the copy the run saved under models/ is a harness-saved model: harness eval takes it as it is
    saved = next((out / "models").glob("tinynet-seed0-*.safetensors"))
    result = runner.invoke(cli, ["eval", str(saved), "--attacks", "pgd", "--eps", "0.1", "--n", str(N),
                                 "--out", str(tmp_path / "saved"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    again = read_results(tmp_path / "saved")
    assert again["clean_acc"].tolist() == pytest.approx([expected] * len(again), abs=1e-6)


def test_eval_model_on_an_in_memory_module_and_data(model_dir, mnist_small, mnist_root, tmp_path):
    net = load_net(model_dir).train()
    frame = harness.eval_model(net, eps=[0.1], attacks="pgd,noise", n=N, device="cpu", data_dir=mnist_root,
                               out=tmp_path / "mem", name="centroids")
    cells = frame[frame["attack"] != "worst-case"]
    assert (cells["status"] == "ok").all() and set(cells["model"]) == {"centroids"}
    assert cells["clean_acc"].tolist() == pytest.approx([own_accuracy(net.eval(), mnist_small)] * len(cells))
    assert frame.attrs["out_dir"] == tmp_path / "mem" and (tmp_path / "mem" / "suite.toml").is_file()
    assert all(p.requires_grad for p in net.parameters())  # the caller's module was not touched

    _, _, x_test, y_test = mnist_small
    x, y = x_test[100:130], y_test[100:130]
    frame = harness.eval_model(net, data=(x, y), eps=0.1, attacks="pgd", n=100, device="cpu",
                               out=tmp_path / "data")
    cells = frame[frame["attack"] != "worst-case"]
    assert set(cells["dataset"]) == {"data"} and set(cells["n"]) == {30}
    with torch.no_grad():
        assert cells["clean_acc"].iloc[0] == pytest.approx(float((net.eval()(x).argmax(1) == y).float().mean()))

    with pytest.raises(HarnessError, match=r"pixel values span \[-1, 1\], expected \[0, 1\]"):
        harness.eval_model(net, data=(x * 2 - 1, y), eps=0.1, attacks="pgd", device="cpu")


def test_a_suite_puts_an_external_model_on_the_grid(model_dir, mnist_small, mnist_root, run_suite, tmp_path):
    weights = model_dir / "tinynet.safetensors"
    suite = {"suite": {"name": "ext"}, "data": {"dataset": "mnist", "test_size": N},
             "models": {"mine": {"model": "external", "factory": "tinynet:build", "weights": str(weights)}},
             "attacks": {"fgsm": {"attack": "fgsm", "backend": "torchattacks"}},
             "grid": {"model": ["mine"], "attack": ["fgsm"], "eps": [0.1]}}
    frame = run_suite(suite, data_root=mnist_root)
    row = frame[frame["attack"] == "fgsm"].iloc[0]
    assert row.status == "ok" and row.architecture == "external" and row.learners == "pretrained"
    assert row.clean_acc == pytest.approx(own_accuracy(load_net(model_dir), mnist_small))

    # the weights' content is part of the model's hash: other weights, other cells
    path = tmp_path / "ext.toml"
    path.write_text(to_toml(suite))
    registry = load_registry()
    before = load_suite(path, registry)
    net = load_net(model_dir)
    with torch.no_grad():
        net.linear.bias.add_(1.0)
    save_file(net.state_dict(), str(weights))
    after = load_suite(path, registry)
    assert config_hash(before.cell_config(before.cells[0])) != config_hash(after.cell_config(after.cells[0]))

    # ... and so is the factory's own source file: edited code, other cells
    factory = model_dir / "tinynet.py"
    factory.write_text(factory.read_text() + "\n# edited\n")
    edited = load_suite(path, registry)
    assert config_hash(after.cell_config(after.cells[0])) != config_hash(edited.cell_config(edited.cells[0]))


def test_a_torchscript_model_is_evaluated(model_dir, mnist_small, runner, tmp_path):
    net = load_net(model_dir)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(net), str(scripted))
    result = runner.invoke(cli, ["eval", str(scripted), "--attacks", "noise", "--eps", "0.1", "--n", str(N),
                                 "--T", "1", "--out", str(tmp_path / "ts"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    frame = read_results(tmp_path / "ts")
    cells = frame[frame["attack"] != "worst-case"]
    assert set(cells["defense"]) == {"T1"} and (cells["status"] == "ok").all()
    assert cells["clean_acc"].tolist() == pytest.approx([own_accuracy(net, mnist_small)] * len(cells))


def _write_bad_files(model_dir: Path) -> dict[str, Path]:
    """Weights that do not fit, in the ways users get them wrong."""
    from safetensors.torch import load_file

    good = load_file(str(model_dir / "tinynet.safetensors"))
    files = {"extra": model_dir / "extra.safetensors", "pickle": model_dir / "weights.pt",
             "three": model_dir / "three.safetensors", "linear": model_dir / "linear.safetensors",
             "bare": model_dir / "bare.safetensors"}
    save_file({**good, "extra.weight": torch.zeros(3)}, str(files["extra"]))
    torch.save(good, files["pickle"])
    save_file({"linear.weight": torch.zeros(3, 784), "linear.bias": torch.zeros(3)}, str(files["three"]))
    save_file({"weight": good["linear.weight"], "bias": good["linear.bias"]}, str(files["linear"]))
    save_file(good, str(files["bare"]))
    return files


@pytest.mark.parametrize("arguments, fragments", [
    (["nosuchmodule_h3:build", "--weights", "{good}"],
     ["factory nosuchmodule_h3:build: no module named 'nosuchmodule_h3'", "PYTHONPATH"]),
    (["broken_dep:build", "--weights", "{good}"], ["needs 'not_installed_package_h3'", "install it"]),
    (["tinynet:buidl", "--weights", "{good}"], ["'tinynet' has no 'buidl'", "did you mean 'build'?"]),
    (["tinynet:build", "--weights", "{good}", "--arg", "pixels=100"],
     ["do not match the model", "linear.weight is [10, 784] in the file, [10, 100] in the model"]),
    (["tinynet:build", "--weights", "{extra}"], ["unexpected extra.weight"]),
    (["tinynet:build", "--weights", "{pickle}"], ["weights.pt is not a safetensors file", "never pickle"]),
    (["tinynet:three_classes", "--weights", "{three}"], ["output for a batch shaped [2, 1, 28, 28] is [2, 3]",
                                                         "expected logits [2, 10]"]),
    (["tinynet:unflattened", "--weights", "{linear}"], ["fails on a batch of images shaped [2, 1, 28, 28]",
                                                        "flatten or reshape inside the model"]),
    (["tinynet:not_a_module", "--weights", "{good}"], ["returned str, expected a torch.nn.Module"]),
    (["tinynet:build"], ["a factory needs its weights: add --weights"]),
    (["tinynet:build", "--weights", "{good}", "--arg", "pixels"], ["--arg pixels: expected NAME=VALUE"]),
    (["{bare}"], ["not a model the harness saved", "harness eval package.module:build --weights"]),
    (["{pickle}"], ["not a TorchScript file"]),
    (["{good_dir}/missing.pt"], ["no such file, and not a factory"]),
    (["tinynet:build", "--weights", "{good}", "--attacks", "autoatack"], ["--attacks autoatack",
                                                                           "did you mean 'autoattack'?"]),
    (["tinynet:build", "--weights", "{good}", "--T", "-1"], ["--T -1: expected auto or a positive number"]),
    (["tinynet:build", "--weights", "{good}", "--eps", "x"], ["--eps x: expected budgets"]),
])
def test_bad_models_are_one_line_errors(model_dir, runner, tmp_path, arguments, fragments):
    files = {**{k: str(v) for k, v in _write_bad_files(model_dir).items()},
             "good": str(model_dir / "tinynet.safetensors"), "good_dir": str(model_dir)}
    arguments = [a.format(**files) for a in arguments]
    if "--eps" not in arguments:
        arguments += ["--eps", "0.1"]
    result = runner.invoke(cli, ["eval", *arguments, "--n", "5", "--device", "cpu", "--quiet",
                                 "--out", str(tmp_path / "never")])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "never" / "results.csv").exists()


def test_an_external_model_needs_one_source(write_suite, registry):
    from harness.errors import SuiteError

    path = write_suite("""
        [data]
        dataset = "mnist"
        [models.mine]
        model = "external"
        [attacks.fgsm]
        attack = "fgsm"
        backend = "torchattacks"
        [grid]
        model = ["mine"]
        attack = ["fgsm"]
        eps = [0.1]
        """)
    with pytest.raises(SuiteError, match=r"models\.mine\.factory: missing; set factory = "):
        load_suite(path, registry)
    with pytest.raises(SuiteError, match=r"models\.mine\.torchscript: set exactly one of factory"):
        load_suite(path, registry, ['models.mine.factory="m:build"', 'models.mine.weights="w.safetensors"',
                                    'models.mine.torchscript="m.pt"'])


def test_an_interrupted_eval_prints_how_to_resume_it(model_dir, runner, tmp_path, monkeypatch):
    from harness.run.runner import Runner, RunInterrupted

    def interrupted(self):
        raise RunInterrupted(1, 4, self.results_path)

    monkeypatch.setattr(Runner, "run", interrupted)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                                 "--attacks", "fgsm", "--eps", "0.1", "--n", "5", "--out", str(out), "--device",
                                 "cpu", "--quiet"])
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert "interrupted: 1 of 4 cells done" in result.output
    assert f"to resume, run: harness run {out / 'suite.toml'} --out {out} --device cpu --quiet" in result.output


def test_a_bad_budget_names_the_option_the_user_gave_not_a_suite_key(model_dir, runner, tmp_path):
    result = runner.invoke(cli, ["eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                                 "--eps", "2", "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    line = assert_one_line_error(result, "--eps: eps 2 is above the L∞ limit 1")
    assert "grid" not in line
    with pytest.raises(HarnessError, match=r"^eps: eps 2 is above") as info:
        harness.eval_model("tinynet:build", weights=model_dir / "tinynet.safetensors", eps=2, out=tmp_path / "api")
    assert "grid" not in str(info.value)


def test_eval_into_a_read_only_out_is_one_line_and_exit_2(model_dir, runner, tmp_path, read_only):
    parent = tmp_path / "ro"
    parent.mkdir()
    read_only(parent)
    result = runner.invoke(cli, ["eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                                 "--attacks", "fgsm", "--eps", "0.1", "--n", "5", "--out", str(parent / "out"),
                                 "--device", "cpu", "--quiet"])
    assert_one_line_error(result, f"--out {parent / 'out'}", "read-only")


def test_eval_checks_the_run_lock_and_builds_the_model_once(model_dir, runner, tmp_path, monkeypatch):
    from harness.own_model import eval_runner
    from harness.suite.generate import eval_suite, model_table
    from harness.results.rundir import RunDir, run_lock

    out = tmp_path / "locked"
    with run_lock(RunDir(out)):
        result = runner.invoke(cli, ["eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                                     "--attacks", "fgsm", "--eps", "0.1", "--n", "5", "--out", str(out),
                                     "--device", "cpu", "--quiet"])
    assert_one_line_error(result, "another `harness run`")

    builds = []
    monkeypatch.setattr("harness.run.runner.build_model", lambda *args: builds.append(args))
    registry = load_registry()
    key, table = model_table("tinynet:build", registry, str(model_dir / "tinynet.safetensors"))
    raw = eval_suite(key, table, registry, attacks="fgsm", n=5)
    evaluation = eval_runner(raw, registry, tmp_path / "once", tmp_path, torch.device("cpu"))
    evaluation.preflight()
    evaluation.preflight()  # what Runner.run does after harness eval's own call
    assert len(builds) == 1


def test_eval_without_a_default_executor_says_so_without_naming_an_option_it_lacks(model_dir, runner, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "local")
    result = runner.invoke(cli, ["eval", "tinynet:build", "--weights", str(model_dir / "tinynet.safetensors"),
                                 "--attacks", "fgsm", "--eps", "0.1", "--n", "5", "--out", str(tmp_path / "x"),
                                 "--device", "cpu", "--quiet"])
    line = assert_one_line_error(result, "harness eval runs its cells on the default executor",
                                 "no registered executor (ray) declares itself the default")
    assert "pass --executor" not in line


def test_temperature_keys_come_from_the_number_and_repeat_nothing(registry):
    from harness.suite.generate import defense_tables

    tables = defense_tables("auto,1,10,100,1e5,1e+16,0.5,2.5e-7", registry)
    assert list(tables) == ["Tauto", "T1", "T10", "T1e2", "T1e5", "T1e16", "T0p5", "T2p5e-7"]
    assert tables["T1e16"]["T"] == 1e16 and tables["Tauto"]["T"] == "auto"
    for given, fragment in [("1e5,100000", "--T 100000: T = 100000.0 is already given"),
                            ("auto,auto", "--T auto: T = auto is already given"),
                            ("-1", "--T -1: expected auto or a positive number"),
                            ("inf", "--T inf: expected auto or a positive number")]:
        with pytest.raises(HarnessError, match=re.escape(fragment)):
            defense_tables(given, registry)


def test_model_keys_leave_room_for_the_suite_name(tmp_path, registry):
    from harness.suite.generate import SUITE_PREFIX, model_table
    from harness.suite.load import SAFE_NAME

    path = tmp_path / ("m" * 120 + ".pt")
    path.write_bytes(b"")
    key, _ = model_table(str(path), registry)
    assert SAFE_NAME.match(key) and SAFE_NAME.match(f"{SUITE_PREFIX}{key}") and key == "m" * 95


def test_attack_names_sets_classes_and_large_budgets_come_from_the_records(registry):
    from harness.api import Attack
    from harness.results.diagnostics import LARGE_EPS
    from harness.own_model import _plugin
    from harness.suite.generate import attack_tables, eval_suite
    from harness.plugins import temporary_plugin

    with pytest.raises(HarnessError, match=re.escape("--attacks cw: several backends (art, torchattacks); write "
                                                     "cw@art")):
        attack_tables("cw", registry, 10)
    with pytest.raises(HarnessError, match=re.escape("--attacks cw@nowhere: attack 'cw' has no backend 'nowhere'")):
        attack_tables("cw@nowhere", registry, 10)
    assert attack_tables("cw@art", registry, 10) == {"cw-art": {"attack": "cw", "backend": "art"}}
    assert attack_tables("pgd", registry, 10)["pgd"]["backend"] == "torchattacks"  # the one that declares sets
    assert attack_tables("autoattack@torchattacks", registry, 7)["autoattack-torchattacks"]["n_classes"] == 7

    # a third-party attack whose class count is in an option of its own name
    record = Attack(name="targeted", backend="docs", build=lambda model, eps, options: None,
                    defaults={"targets": 10}, classes_option="targets")
    with temporary_plugin(_plugin("targets-test", "harness_register_attacks", record)):
        assert attack_tables("targeted", load_registry(), 4)["targeted"]["targets"] == 4

    raw = eval_suite("m", {"model": "external", "torchscript": "m.pt"}, registry, eps="0.1",
                     attacks="pgd,pgd-l2", n=10)
    large = {grid["eps"][0]: grid["attack"] for grid in raw["grid"][1:]}
    assert large == {LARGE_EPS["linf"]: ["pgd"], LARGE_EPS["l2"]: ["pgd-l2"]}


def test_an_in_memory_module_is_identified_by_its_code_too(tmp_path, monkeypatch):
    import importlib.util

    from torch import nn

    from harness.own_model import module_fingerprint

    def load(folder, body):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "netmod.py"
        path.write_text(f"from torch import nn\n\n\nclass Net(nn.Linear):\n    def forward(self, x):\n"
                        f"        return {body}\n")
        spec = importlib.util.spec_from_file_location("netmod", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "netmod", module)
        spec.loader.exec_module(module)
        net = module.Net(4, 3)
        with torch.no_grad():
            net.weight.fill_(0.5)
            net.bias.zero_()
        return module_fingerprint(net)

    # same class name, module and weights; only forward() differs
    assert load("a", "super().forward(x)") != load("b", "2 * super().forward(x)")
    linear = nn.Linear(4, 3)
    relu, tanh = nn.Sequential(linear, nn.ReLU()), nn.Sequential(linear, nn.Tanh())
    assert relu.state_dict().keys() == tanh.state_dict().keys()
    assert module_fingerprint(relu) != module_fingerprint(tanh)
    assert module_fingerprint(nn.LeakyReLU(0.1)) != module_fingerprint(nn.LeakyReLU(0.2))  # settings, no weights
    assert module_fingerprint(relu) == module_fingerprint(relu)


def test_data_takes_its_class_count_from_the_model_not_the_labels():
    from torch import nn

    from harness.own_model import _data_plugin, _output_width

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])  # only 3 of the 10 classes present
    assert _output_width(net, (x, y)) == 10 and net.training  # on a copy: the caller's module is untouched
    records = []
    _, plugin = _data_plugin((x, y), 10, "data-test")
    plugin.harness_register_datasets(records.append)
    assert records[0].info.num_classes == 10
    with pytest.raises(HarnessError, match=re.escape("data: labels span [0, 2], expected 0 to 1")):
        _data_plugin((x, y), 2, "data-test")
    with pytest.raises(HarnessError, match="num_classes 1: expected the number of classes"):
        _data_plugin((x, y), 1, "data-test")


def test_nan_logits_are_a_one_line_error():
    from torch import nn

    from harness.api import DataInfo
    from harness.kit.modelcheck import check_output

    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 10), float("nan"))

    info = DataInfo(input_shape=(1, 4, 4), num_classes=10, mean=0.5, std=0.25)
    with pytest.raises(HarnessError, match="model Broken: returns NaN or infinite logits"):
        check_output(Broken().eval(), info, "model Broken")


def test_harness_eval_asks_the_registry_for_the_loader_a_model_plugin_declares(harness_plugin, monkeypatch):
    from harness import hookimpl
    from harness.api import Model
    from harness.suite.generate import model_table

    asked = []

    def load(model, weights, kwargs):
        asked.append((model, weights, kwargs))
        return "My Net", {"width": kwargs.get("width", 1)}

    class Toy:
        __name__ = "toy-plugin"

        @hookimpl
        def harness_register_models(self, register):
            register(Model(name="toy", build=lambda options, info: None, defaults={"width": 1}, pretrained=True,
                           loader=load))
    harness_plugin(Toy())
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "external")  # else the first by name, external, loads it
    assert model_table("zoo:net", load_registry(), "w.bin", {"width": 3}) == ("My-Net", {"model": "toy", "width": 3})
    assert asked == [("zoo:net", "w.bin", {"width": 3})]

    from harness.registry import Registry

    with pytest.raises(HarnessError, match="MODEL zoo:net: no registered model plugin loads a model named on the "
                                           "command line"):
        model_table("zoo:net", Registry())
