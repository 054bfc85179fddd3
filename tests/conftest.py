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

OWN_PLUGINS = sorted(ep.name for ep in entry_points() if ep.dist is not None and ep.dist.name == "robustness-harness")


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
    """Write a suite file from TOML text and return its path."""
    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
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


TINY_SUITE = """
[suite]
name = "tiny"

[data]
dataset = "mnist"
train_size = 2000
test_size = 200

[models.bio]
model = "repu"
hidden = 64

[[models.bio.stages]]
learner = "hebbian"
params = ["fc1.weight"]
freeze = true
p = 2.0
k = 2
lr = 0.04
epochs = 3

[[models.bio.stages]]
learner = "backprop"
params = ["fc2.weight"]
epochs = 2

[models.bp]
model = "repu"
hidden = 64

[[models.bp.stages]]
learner = "backprop"
epochs = 2

[defenses.T1e5]
defense = "logit-scale"
T = 1e5

[attacks.fgsm]
attack = "fgsm"
backend = "torchattacks"

[attacks.pgd]
attack = "pgd"
backend = "torchattacks"
steps = 5

[grid]
model = ["bio", "bp"]
defense = ["none", "T1e5"]
attack = ["fgsm", "pgd"]
eps = [0.0, 0.1]
exclude = [{ attack = "fgsm", eps = 0.0 }]
"""


@pytest.fixture
def tiny_suite(write_suite) -> Path:
    """A real but tiny suite: two 64-unit nets on 2 000 MNIST images, 12 cells (16 minus 4 excluded)."""
    return write_suite(TINY_SUITE)


SMALL_SUITE = """
[suite]
name = "small"

[data]
dataset = "mnist"
train_size = 10000
test_size = 500

[models.bio]
model = "repu"
hidden = 100

[[models.bio.stages]]
learner = "hebbian"
params = ["fc1.weight"]
freeze = true
p = 2.0
k = 2
lr = 0.04
epochs = 30

[[models.bio.stages]]
learner = "backprop"
params = ["fc2.weight"]
epochs = 5

[models.bp]
model = "repu"
hidden = 100

[[models.bp.stages]]
learner = "backprop"
epochs = 3

[defenses.T1]
defense = "logit-scale"

[defenses.T1e5]
defense = "logit-scale"
T = 1e5

[attacks.fgsm]
attack = "fgsm"
backend = "torchattacks"

[attacks.pgd]
attack = "pgd"
backend = "torchattacks"
steps = 20
alpha = 0.01

[attacks.pgd-art]
attack = "pgd"
backend = "art"
max_iter = 20
eps_step = 0.01
num_random_init = 1

[grid]
model = ["bio", "bp"]
defense = ["T1", "T1e5"]
attack = ["fgsm", "pgd", "pgd-art"]
eps = [0.0, 0.1, 0.2]
"""


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
    path.write_text(SMALL_SUITE)
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
