"""Shared fixtures. Only this distribution's own plugins are loaded during the project's tests,
whatever else is installed; test plugins are registered per test through the public API."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from harness.kit.threads import set_math_environment

set_math_environment()  # as the CLI does, before anything below imports torch

from harness.plugins import entry_points, load_registry  # noqa: E402
from harness.suite.tomlwrite import to_toml  # noqa: E402
from suite_builder import SMALL, TINY  # noqa: E402

OWN_PLUGINS = sorted(ep.name for ep in entry_points() if ep.dist is not None and ep.dist.name == "robustness-harness")


# Fixtures whose first use costs a real run (tens of seconds): a test that uses one is slow
SLOW_FIXTURES = {"small_run"}


def pytest_collection_modifyitems(items):
    """Mark ``slow`` every test that uses the shared real run (``pytest -m "not slow"`` leaves it
    out); the other slow tests carry the mark themselves."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _only_own_plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", ",".join(OWN_PLUGINS))
    monkeypatch.delenv("HARNESS_BLOCK_PLUGINS", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _no_user_model_cache():
    """`harness run` in tests never reads or fills the user's model cache: a model cached by other
    code would hide training, and determinism tests must train twice. Cache tests opt back in."""
    saved = os.environ.get("HARNESS_NO_CACHE")
    os.environ["HARNESS_NO_CACHE"] = "1"
    yield
    if saved is None:
        os.environ.pop("HARNESS_NO_CACHE", None)
    else:
        os.environ["HARNESS_NO_CACHE"] = saved


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST files, fetched and verified once (HARNESS_DATA or the user cache dir)."""
    from harness.kit.cli_options import default_data_root

    root = Path(os.environ.get("HARNESS_DATA") or default_data_root())
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HARNESS_LOAD_PLUGINS", ",".join(OWN_PLUGINS))
    load_registry().datasets.get("mnist").fetch(root)
    return root


@pytest.fixture(scope="session")
def mnist_small(mnist_root):
    """10 000 training and 1 000 test images of real MNIST, as [0, 1] tensors."""
    import torch

    torch.set_num_threads(2)
    dataset = load_registry().datasets.get("mnist")
    x_train, y_train = dataset.load(mnist_root, True)
    x_test, y_test = dataset.load(mnist_root, False)
    return x_train[:10000], y_train[:10000], x_test[:1000], y_test[:1000]


@pytest.fixture
def registry():
    return load_registry()


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite file from TOML text or a suite dict (tests/suite_builder.py) and return its path."""
    def write(suite: str | dict, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(suite) if isinstance(suite, str) else to_toml(suite))
        return path
    return write


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the trainings and attacks here are tiny, and on 2 shared cores
    one thread is many times faster than two (function scope: ``mnist_small`` sets 2 threads when a
    session first uses it). Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_suite(write_suite) -> Path:
    """A real but tiny suite: two 64-unit nets on 2 000 MNIST images, 12 cells (16 minus 4 excluded)."""
    return write_suite(TINY)


@pytest.fixture(scope="session")
def small_run(mnist_root, tmp_path_factory):
    """One real run shared by the pipeline tests: Bio and BP nets (100 hidden units, 10 000 MNIST
    training images), attacked by FGSM and PGD through torchattacks and PGD through ART.
    Returns (suite, results DataFrame, output directory)."""
    import torch

    from harness.run.runner import Runner
    from harness.suite.load import load_suite

    torch.set_num_threads(2)
    directory = tmp_path_factory.mktemp("small")
    path = directory / "small.toml"
    path.write_text(to_toml(SMALL))
    registry = load_registry()
    suite = load_suite(path, registry)
    frame = Runner(suite, registry, directory / "out", mnist_root, torch.device("cpu")).run()
    return suite, frame, directory / "out"


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(directory)`` makes ``directory`` read-only as the kernel sees it, for this test's
    process: root ignores a chmod and a test cannot mount a read-only file system, so both ways of
    asking are answered as a read-only file system answers them (os.access says no; mkdir under it
    fails with EROFS)."""
    import errno

    def make(directory: Path) -> None:
        real_access, real_mkdir = os.access, Path.mkdir

        def access(path, mode, *args, **kwargs):
            if Path(path).absolute() == directory and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        def mkdir(self, *args, **kwargs):
            if directory in Path(self).absolute().parents:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_mkdir(self, *args, **kwargs)
        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(Path, "mkdir", mkdir)
    return make
