"""pytest fixtures for testing harness plugins, loaded by pytest through the ``pytest11`` entry point
(``harness = "harness.testing"``) wherever robustness-harness is installed. Turn them off with
``pytest -p no:harness``.

* ``harness_dataset`` (session): scikit-learn's 8x8 digits through the built-in ``digits`` plugin,
  as tensors; nothing is downloaded.
* ``harness_model``: a small ReLU net (``repu``, 32 hidden units, power 1) trained by ``backprop``
  on those digits; a fresh copy for every test.
* ``harness_plugin``: ``harness_plugin(obj)`` registers a plugin object until the test ends. Only
  the built-in plugins are loaded next to it, never other installed third-party plugins.
* ``run_suite``: ``run_suite(suite)`` runs a suite (a dict or a TOML path) in the test's
  ``tmp_path`` on the CPU and returns the results DataFrame, as ``harness run`` writes it.

And two helpers: ``assert_one_line_error(result, *fragments)`` checks that a command invoked
with click's ``CliRunner`` failed the harness way: exit code 2, one line ``error: ...`` holding every
fragment, no traceback. ``stage_context(learner, model, data, params, **options)`` gives the learner record
and the ``TrainContext`` that ``harness run`` hands one stage, so a learner's test trains it in two lines::

    spec, ctx = stage_context("my-rule", model, (x, y, x_test, y_test), ("fc1.weight",), epochs=2)
    stats = spec.train(ctx)

Only fixtures and those helpers live here: nothing is autouse, and torch, pandas and the harness core are imported
inside the fixtures, so loading this plugin costs other test suites nothing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pytest

from harness.suite.tomlwrite import to_toml  # noqa: F401 (public here too)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from harness.api import DataInfo

DATASET = "digits"
# The trained model of ``harness_model``: ReLU features on the 64 pixels, a linear head.
MODEL_OPTIONS = {"hidden": 32, "power": 1.0, "beta": 1.0}
MODEL_TRAINING = {"epochs": 15, "lr": 1e-2, "batch_size": 50}
MODEL_SEED = 0


@dataclass(frozen=True)
class TinyData:
    """A dataset plugin's splits as tensors: images in [0, 1] shaped ``[N, *info.input_shape]``."""

    name: str
    root: Path
    info: "DataInfo"
    x: "torch.Tensor"
    y: "torch.Tensor"
    x_test: "torch.Tensor"
    y_test: "torch.Tensor"


def stage_context(learner: str, model, data, params=("fc1.weight",), *, seed: int = 0, info=None, state_dir=None,
                  progress=None, check: bool = True, **options):
    """``(record, ctx)``: learner ``learner``'s record and the ``harness.api.TrainContext`` of one stage that
    trains ``params`` (names of ``model``'s parameters) on ``data`` = ``(x, y, x_test, y_test)`` on the CPU, with
    ``options`` over the record's optional values and defaults (presets are not applied: pass their values),
    checked by the record's ``check`` unless ``check`` is false. ``progress`` defaults to one that shows
    nothing; ``state_dir`` (None: none, as with the model cache off) is where the learner may keep state."""
    import torch

    from harness.api import TrainContext
    from harness.plugins import load_registry

    spec = load_registry().learners.get(learner)
    merged = {**spec.optional, **spec.defaults, **options}
    if check and spec.check is not None:
        spec.check(merged)
    x, y, x_test, y_test = data
    named = dict(model.named_parameters())
    return spec, TrainContext(model=model, params={n: named[n] for n in params}, options=merged, x=x, y=y,
                              x_test=x_test, y_test=y_test, device=torch.device("cpu"), seed=seed,
                              progress=progress or _no_progress, info=info, state_dir=state_dir)


def assert_one_line_error(result, *fragments: str) -> str:
    """``result`` (a ``click.testing.Result``) is the harness's answer to bad input: exit code 2 and
    a single non-blank line ``error: ...`` containing each fragment, without a traceback. Returns
    that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def harness_dataset(tmp_path_factory) -> TinyData:
    """The built-in ``digits`` dataset (1438 train / 359 test 8x8 images, 10 classes), loaded once
    per session. Treat the tensors as read-only: other tests share them."""
    from harness.plugins import builtin_plugins_only, load_registry

    with builtin_plugins_only():
        dataset = load_registry().datasets.get(DATASET)
    root = tmp_path_factory.mktemp("harness-data")
    dataset.fetch(root)
    x, y = dataset.load(root, True)
    x_test, y_test = dataset.load(root, False)
    return TinyData(DATASET, root, dataset.info, x, y, x_test, y_test)


@pytest.fixture(scope="session")
def _harness_trained_state(harness_dataset):
    """Trains the ``harness_model`` net once per session; returns its weights."""
    import torch

    from harness.api import TrainContext
    from harness.plugins import builtin_plugins_only, load_registry

    with builtin_plugins_only():
        registry = load_registry()
    module = _build_model(registry, harness_dataset.info)
    learner = registry.learners.get("backprop")
    data = harness_dataset
    with _fork_torch_rng(MODEL_SEED):
        learner.train(TrainContext(
            model=module, params=dict(module.named_parameters()),
            options={**learner.defaults, **MODEL_TRAINING}, x=data.x, y=data.y, x_test=data.x_test,
            y_test=data.y_test, device=torch.device("cpu"), seed=MODEL_SEED, progress=_no_progress,
            info=data.info))
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


@pytest.fixture
def harness_model(_harness_trained_state, harness_dataset):
    """A trained ``repu`` ReLU net on ``harness_dataset`` (about 97 % test accuracy), in eval mode
    with frozen parameters: the kind of model an attack or defense plugin receives. Each test gets
    its own copy."""
    from harness.plugins import builtin_plugins_only, load_registry

    with builtin_plugins_only():
        module = _build_model(load_registry(), harness_dataset.info)
    module.load_state_dict(_harness_trained_state)
    for param in module.parameters():
        param.requires_grad_(False)
    return module.eval()


@pytest.fixture
def harness_plugin(monkeypatch) -> Iterator[Callable[..., str]]:
    """``harness_plugin(plugin, name=None)`` registers a plugin object (a module, class instance or
    namespace with ``harness.hookimpl`` functions) for the rest of the test and returns its name.
    Every registry built meanwhile sees it, the ``harness`` CLI's included. Installed third-party
    plugins are not loaded (``HARNESS_LOAD_PLUGINS`` is set to the built-ins), so a test sees the
    built-ins and the plugins it registered, whatever else is installed."""
    from harness.plugins import builtin_plugin_names, temporary_plugin

    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", ",".join(builtin_plugin_names()))
    monkeypatch.delenv("HARNESS_BLOCK_PLUGINS", raising=False)
    stack = contextlib.ExitStack()

    def register(plugin: object, name: str | None = None) -> str:
        return stack.enter_context(temporary_plugin(plugin, name))
    try:
        yield register
    finally:
        stack.close()


@pytest.fixture
def run_suite(tmp_path) -> Callable[..., "pd.DataFrame"]:
    """``run_suite(suite, device="cpu", data_root=None)`` runs a suite and returns its results table
    (``harness.results.table`` schema, worst-case rows included). ``suite`` is a dict shaped like a suite
    file (written to ``tmp_path`` as TOML) or the path of a TOML file. Each call writes to a new
    directory under ``tmp_path``, kept in ``frame.attrs["out_dir"]`` (trained models under
    ``models/``). Plugins come from the environment: the built-ins and installed entry points, or,
    with ``harness_plugin``, the built-ins and the registered objects. ``data_root`` defaults to
    ``$HARNESS_DATA`` or the user cache dir, as for ``harness run``."""
    calls = 0

    def run(suite: Mapping[str, Any] | str | os.PathLike, *, device: str = "cpu",
            data_root: str | os.PathLike | None = None) -> "pd.DataFrame":
        import torch

        from harness.kit.cli_options import data_root as default_root
        from harness.plugins import load_registry
        from harness.run.runner import Runner
        from harness.suite.load import load_suite

        nonlocal calls
        calls += 1
        if isinstance(suite, Mapping):
            path = tmp_path / f"suite-{calls}.toml"
            path.write_text(to_toml(suite))
        else:
            path = Path(suite)
        registry = load_registry()
        loaded = load_suite(path, registry)
        out = tmp_path / f"run-{calls}"
        root = Path(data_root) if data_root is not None else default_root(None)  # as for `harness run`
        frame = Runner(loaded, registry, out, root, torch.device(device)).run()
        frame.attrs["out_dir"] = out
        return frame
    return run


# -- helpers ------------------------------------------------------------------------------------

def _build_model(registry, info):
    model = registry.models.get("repu")
    return model.build({**model.defaults, **MODEL_OPTIONS}, info)


def _no_progress(total, description=None):
    return lambda n=1, **stats: None


@contextlib.contextmanager
def _fork_torch_rng(seed: int):
    """Seed torch's global generator for the block and restore its state afterwards, so a fixture
    does not change what later tests draw."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
