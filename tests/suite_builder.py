"""One suite builder for the tests: a suite as the dict ``tomllib`` would read, made of named parts,
so a test says what its suite is (a 32-unit backprop net, FGSM at eps 0.1) and what it changes
(:func:`changed`) instead of writing the same TOML text out again. ``write_suite`` (tests/conftest.py)
writes such a dict as TOML (``harness.suite.tomlwrite.to_toml``); ``run_suite`` takes it as it is."""

from __future__ import annotations

import copy
from typing import Any, Mapping

DROP = object()  # a value for changed(): remove the key


def suite(*, models: Mapping[str, Any], attacks: Mapping[str, Any], grid: Mapping[str, Any],
          defenses: Mapping[str, Any] | None = None, name: str | None = None, dataset: str = "mnist",
          train_size: int | None = 1000, test_size: int | None = 100, eval: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """A suite: ``[suite] name`` when given, ``[data]``, ``[eval]`` when given, then the tables."""
    document: dict[str, Any] = {"suite": {"name": name}} if name else {}
    data: dict[str, Any] = {"dataset": dataset}
    if train_size is not None:
        data["train_size"] = train_size
    if test_size is not None:
        data["test_size"] = test_size
    document["data"] = data
    if eval:
        document["eval"] = dict(eval)
    document["models"] = {key: dict(table) for key, table in models.items()}
    if defenses:
        document["defenses"] = {key: dict(table) for key, table in defenses.items()}
    document["attacks"] = {key: dict(table) for key, table in attacks.items()}
    document["grid"] = dict(grid)
    return copy.deepcopy(document)


def repu(hidden: int | None, *stages: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """A ``repu`` model table trained by ``stages`` (none: a model with no learner stages);
    ``hidden`` None: the plugin's default width."""
    table: dict[str, Any] = {"model": "repu", **({} if hidden is None else {"hidden": hidden}), **options}
    if stages:
        table["stages"] = [dict(stage) for stage in stages]
    return table


def backprop(*params: str, **options: Any) -> dict[str, Any]:
    """A ``backprop`` stage (``params`` patterns; none: the learner's default, every parameter)."""
    return {"learner": "backprop", **({"params": list(params)} if params else {}), **options}


def first_layer(learner: str, **options: Any) -> dict[str, Any]:
    """A stage that trains the first layer alone, frozen afterwards (Hebbian, random, Oja)."""
    return {"learner": learner, "params": ["fc1.weight"], "freeze": True, **options}


def hebbian(**options: Any) -> dict[str, Any]:
    """The Hebbian stage of a Bio net."""
    return first_layer("hebbian", **options)


def bio(hidden: int, hebbian_options: Mapping[str, Any], head_options: Mapping[str, Any],
        **options: Any) -> dict[str, Any]:
    """A Bio net: a Hebbian first layer, frozen, then a backprop head."""
    return repu(hidden, hebbian(**hebbian_options), backprop("fc2.weight", **head_options), **options)


def logit_scale(T: float | str | None = None) -> dict[str, Any]:
    """The ``logit-scale`` rescaler (no ``T``: its default, 1)."""
    return {"defense": "logit-scale", **({} if T is None else {"T": T})}


def torchattacks(name: str, **options: Any) -> dict[str, Any]:
    return {"attack": name, "backend": "torchattacks", **options}


def changed(document: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with each dotted key set (``models.bp.stages.0.epochs``; list items
    by index) or removed (value :data:`DROP`)."""
    result = copy.deepcopy(dict(document))
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node: Any = result
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key: Any = int(last) if isinstance(node, list) else last
        if value is DROP:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)
    return result


# The suites several test modules share -------------------------------------------------------------

# Two 64-unit nets on 2 000 MNIST images, 12 cells (16 minus 4 excluded): the `tiny_suite` fixture.
TINY = suite(name="tiny", train_size=2000, test_size=200,
             models={"bio": bio(64, dict(p=2.0, k=2, lr=0.04, epochs=3), dict(epochs=2)),
                     "bp": repu(64, backprop(epochs=2))},
             defenses={"T1e5": logit_scale(1e5)},
             attacks={"fgsm": torchattacks("fgsm"), "pgd": torchattacks("pgd", steps=5)},
             grid={"model": ["bio", "bp"], "defense": ["none", "T1e5"], "attack": ["fgsm", "pgd"],
                   "eps": [0.0, 0.1], "exclude": [{"attack": "fgsm", "eps": 0.0}]})

# Bio and BP (100 units, 10 000 images) under FGSM and PGD of both backends: the shared `small_run`.
SMALL = suite(name="small", train_size=10000, test_size=500,
              models={"bio": bio(100, dict(p=2.0, k=2, lr=0.04, epochs=30), dict(epochs=5)),
                      "bp": repu(100, backprop(epochs=3))},
              defenses={"T1": logit_scale(), "T1e5": logit_scale(1e5)},
              attacks={"fgsm": torchattacks("fgsm"), "pgd": torchattacks("pgd", steps=20, alpha=0.01),
                       "pgd-art": {"attack": "pgd", "backend": "art", "max_iter": 20, "eps_step": 0.01,
                                   "num_random_init": 1}},
              grid={"model": ["bio", "bp"], "defense": ["T1", "T1e5"], "attack": ["fgsm", "pgd", "pgd-art"],
                    "eps": [0.0, 0.1, 0.2]})


def one_net(learner: str = "backprop", epochs: int = 1, convergence_images: int = 0,
            attacks: Mapping[str, Any] | None = None, eps: tuple[float, ...] = (0.1,), **changes: Any) -> dict[str, Any]:
    """One 32-unit net on 1 000 images, 100 test images, with and without T = 1e5: the suites of
    the cache, executor and resume tests."""
    attacks = dict(attacks or {"fgsm": torchattacks("fgsm")})
    return suite(eval={"convergence_images": convergence_images},
                 models={"bp": repu(32, {"learner": learner, "epochs": epochs})},
                 defenses={"T1e5": logit_scale(1e5)}, attacks=attacks,
                 grid={"model": ["bp"], "defense": ["none", "T1e5"], "attack": list(attacks), "eps": list(eps)},
                 **changes)


def fgsm_on(key: str, model: Mapping[str, Any], defenses: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The least a suite needs: model ``key`` (and ``defenses``, each on the grid) under FGSM at eps
    0.1, on the whole of MNIST: for tests that load a suite without running it."""
    grid: dict[str, Any] = {"model": [key], "attack": ["fgsm"], "eps": [0.1]}
    if defenses:
        grid = {"model": [key], "defense": list(defenses), "attack": ["fgsm"], "eps": [0.1]}
    return suite(train_size=None, test_size=None, models={key: model}, defenses=defenses,
                 attacks={"fgsm": torchattacks("fgsm")}, grid=grid)


def run_from_cli(folder, suite: Mapping[str, Any], name: str):
    """Write ``suite`` as ``folder/NAME.toml`` and run it the way a user does, ``harness run FILE --out
    folder/run --no-cache`` (click's runner); the run must succeed. Returns the run directory: the shared
    real runs of module fixtures."""
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.suite.tomlwrite import to_toml

    path = folder / f"{name}.toml"
    path.write_text(to_toml(suite))
    out = folder / "run"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--no-cache"])
    assert result.exit_code == 0, result.output
    return out
