"""The example third-party package examples/harness-softhebb, installed as a real distribution: found
through the ``harness`` entry-point group, compared with the built-in Krotov-Hopfield learner in one
suite, and its own tests pass with the ``harness.testing`` fixtures pytest loads by entry point.

Where the example is not installed (the usual case), the module installs it into a temporary folder
(``pip install --target``, from a copy of its source, without dependencies) and puts that folder on
``sys.path`` for these tests and on ``PYTHONPATH`` for the subprocess: the user's environment is
never changed, and ``harness plugins`` does not list softhebb afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.plugins import builtin_plugin_names, load_registry

EXAMPLE = Path(__file__).parents[2] / "examples" / "harness-softhebb"
DIST = "harness-softhebb"


def softhebb_entry_point():
    found = [ep for ep in importlib.metadata.entry_points(group="harness")
             if ep.name == "softhebb" and ep.dist is not None and ep.dist.name == DIST]
    return found[0] if found else None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the example's entry point, the folder it was installed in or None when it already was)."""
    if softhebb_entry_point() is not None:
        yield softhebb_entry_point(), None
        return
    work = tmp_path_factory.mktemp("softhebb")
    source, target = work / "source", work / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-compile", "--target", str(target), str(source)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        entry_point = softhebb_entry_point()
        assert entry_point is not None, f"pip installed {EXAMPLE} into {target}, yet no 'softhebb' entry point"
        yield entry_point, target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == "harness_softhebb" or m.startswith("harness_softhebb.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def with_softhebb(installed, monkeypatch):
    """The built-ins plus the installed example, nothing else."""
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", ",".join([*builtin_plugin_names(), installed[0].name]))


def comparison_suite() -> dict:
    """Krotov-Hopfield and SoftHebb first layers (frozen, 100 ReLU units) under the same backprop head,
    on scikit-learn's digits, attacked by FGSM and PGD."""
    def net(stage: dict) -> dict:
        return {"model": "repu", "hidden": 100, "power": 1.0, "beta": 1.0,
                "stages": [{"params": ["fc1.weight"], "freeze": True, "epochs": 10, **stage},
                           {"learner": "backprop", "params": ["fc2.weight"], "epochs": 10}]}
    return {
        "suite": {"name": "softhebb-vs-krotov"},
        "data": {"dataset": "digits"},
        "eval": {"convergence_images": 0},
        "models": {"krotov": net({"learner": "hebbian", "p": 2.0, "k": 2, "lr": 0.04}),
                   "softhebb": net({"learner": "softhebb"})},
        "attacks": {"fgsm": {"attack": "fgsm", "backend": "torchattacks"},
                    "pgd": {"attack": "pgd", "backend": "torchattacks", "steps": 10, "alpha": 0.02}},
        "grid": {"model": ["krotov", "softhebb"], "attack": ["fgsm", "pgd"], "eps": [0.0, 0.1]},
    }


def test_the_installed_package_registers_through_its_entry_point(with_softhebb):
    entries = {e.key: e for e in load_registry().learners.entries()}
    assert (entries["softhebb"].plugin, entries["softhebb"].distribution) == ("softhebb", DIST)
    assert entries["hebbian"].distribution == "robustness-harness"
    assert entries["softhebb"].obj.defaults["temperature"] == 1.0


def test_softhebb_and_krotov_in_one_suite(with_softhebb, run_suite):
    frame = run_suite(comparison_suite())
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    cells = frame[frame["attack"] != "worst-case"]
    assert len(cells) == 8 and sorted(set(cells["model"])) == ["krotov", "softhebb"]
    learners = dict(zip(cells["model"], cells["learners"]))
    assert learners == {"krotov": "hebbian[fc1.weight,frozen] > backprop[fc2.weight]",
                        "softhebb": "softhebb[fc1.weight,frozen] > backprop[fc2.weight]"}
    summary = {}
    for model in ("krotov", "softhebb"):
        rows = cells[cells["model"] == model]
        clean = rows["clean_acc"].iloc[0]
        assert (rows["clean_acc"] == clean).all()
        assert clean > 0.8, (model, clean)  # 10 classes: chance is 0.1
        attacked = rows[rows["eps"] == 0.1].set_index("attack")["robust_acc"]
        assert (attacked < clean).all(), (model, attacked)
        worst = frame[(frame["model"] == model) & (frame["attack"] == "worst-case")]["robust_acc"]
        assert len(worst) == 1 and worst.iloc[0] <= attacked.min()
        summary[model] = (clean, attacked["fgsm"], attacked["pgd"], worst.iloc[0])
    print("clean, FGSM, PGD, worst at eps 0.1:", summary)

    # the softhebb model's sidecar holds the plugin's per-epoch statistics
    import json

    (sidecar,) = (frame.attrs["out_dir"] / "models").glob("softhebb-*.json")
    stage = json.loads(sidecar.read_text())["stages"][0]
    assert stage["learner"] == "softhebb" and len(stage["stats"]["history"]) == 10
    assert set(stage["stats"]["history"][-1]) == {"epoch", "norm_dev", "never_won", "winner_changes", "entropy"}


@pytest.mark.slow
def test_the_example_packages_own_tests_pass(installed, tmp_path):
    """Run as its author would: pytest in the package's directory, fixtures from the pytest11 entry
    point, no HARNESS_* variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_LOAD") and not k.startswith("HARNESS_BLOCK")}
    target = installed[1]
    if target is not None:  # the temporary installation, seen by the subprocess too
        env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--basetemp", str(tmp_path / "pytest")],
                            cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout and "error" not in result.stdout
