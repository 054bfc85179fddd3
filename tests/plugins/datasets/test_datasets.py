"""Tests of the fashion-mnist, digits and cifar10 dataset plugins.

digits runs on the real file shipped inside scikit-learn. fashion-mnist runs on the real files of
the Debian package ``dataset-fashion-mnist`` (CI installs it; ``apt-get install -y
dataset-fashion-mnist`` elsewhere). CIFAR-10 cannot be fetched on this project's machines, so its
tests cover the error paths and the guarantee that nothing is unpickled before its md5 is checked,
plus loading a tiny hand-made dataset in the same format.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.api import Dataset
from harness.errors import DataError
from harness.plugins import entry_points, load_registry
import harness_cifar10
import harness_digits
import harness_fashion_mnist

PLUGINS = [
    (harness_fashion_mnist, "fashion-mnist", (1, 28, 28)),
    (harness_digits, "digits", (1, 8, 8)),
    (harness_cifar10, "cifar10", (3, 32, 32)),
]


def registry_with(module):
    """The project's registry plus ``module``, added through the public API unless it is already
    an entry point of the installation (then it is loaded as one, and must not be added twice)."""
    as_entry_point = any(ep.value == module.__name__ for ep in entry_points())
    return load_registry(extra=[] if as_entry_point else [module])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 100)


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# ---------------------------------------------------------------------------------------- all three


def test_imports_are_heavy_library_free():
    code = ("import sys, harness_fashion_mnist, harness_digits, harness_cifar10; "
            "heavy = {'torch', 'torchvision', 'numpy', 'sklearn'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


@pytest.mark.parametrize("module, name, shape", PLUGINS, ids=[p[1] for p in PLUGINS])
def test_registers_typed_dataset(module, name, shape):
    registry = registry_with(module)
    ds = registry.datasets.get(name)
    assert isinstance(ds, Dataset)
    assert ds.fetch is module.fetch and ds.load is module.load
    assert ds.info.input_shape == shape and ds.info.num_classes == 10
    assert 0 < ds.info.mean < 1 and 0 < ds.info.std < 1
    assert ds.fingerprint.startswith(name + ":") and len(ds.fingerprint) == len(name) + 1 + 16
    assert ds.description and "\n" not in ds.description
    assert "mnist" in registry.datasets.names()  # the built-in is still there, no name clash


# ------------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    train = harness_digits.load(Path("unused"), True)
    test = harness_digits.load(Path("unused"), False)
    return train, test


def test_digits_fetch_verifies_sklearn_file_and_creates_root(tmp_path):
    root = tmp_path / "new" / "root"
    (path,) = harness_digits.fetch(root)
    assert path.name == "digits.csv.gz" and path.parent.name == "data" and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == harness_digits.DATA_SHA256
    assert root.is_dir() and list(root.iterdir()) == []  # nothing is written there


def test_digits_sizes_shapes_range_classes(digits):
    import torch

    (x_train, y_train), (x_test, y_test) = digits
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == harness_digits.N_TEST == 359
    for x, y in digits:
        assert x.shape == (len(y), 1, 8, 8) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert sorted(y.unique().tolist()) == list(range(10))
    # stratified: every class has 20 % (rounded) of its images in test
    for c in range(10):
        n_c = int((y_train == c).sum() + (y_test == c).sum())
        assert int((y_test == c).sum()) == round(0.2 * n_c)
    assert abs(float(x_train.mean()) - harness_digits.MEAN) < 1e-4
    assert abs(float(x_train.std(unbiased=False)) - harness_digits.STD) < 1e-4


def test_digits_split_is_stable_and_disjoint(digits):
    import torch

    (x_train, y_train), (x_test, y_test) = digits
    again_train, again_test = harness_digits.load(Path("unused"), True), harness_digits.load(Path("unused"), False)
    assert torch.equal(x_train, again_train[0]) and torch.equal(y_train, again_train[1])
    assert torch.equal(x_test, again_test[0]) and torch.equal(y_test, again_test[1])
    # the split is a partition of the file, and its test indices hash to the pinned value
    labels = _file_labels()
    train_idx, test_idx = harness_digits.split_indices(labels)
    assert set(train_idx).isdisjoint(test_idx) and len(train_idx) + len(test_idx) == 1797
    assert hashlib.sha256(",".join(map(str, test_idx)).encode()).hexdigest() == harness_digits.TEST_INDEX_SHA256
    assert y_train.tolist() == labels[train_idx].tolist() and y_test.tolist() == labels[test_idx].tolist()


def _file_labels():
    path = harness_digits.data_file()
    return harness_digits._parse(path, path.read_bytes())[1]


@pytest.mark.parametrize("damage", [flip_byte, truncate])
def test_digits_corrupt_copy_refused(tmp_path, monkeypatch, damage):
    bad = tmp_path / "digits.csv.gz"
    shutil.copyfile(harness_digits.data_file(), bad)
    damage(bad)
    monkeypatch.setattr(harness_digits, "data_file", lambda: bad)
    for call in (lambda: harness_digits.fetch(tmp_path), lambda: harness_digits.load(tmp_path, True)):
        with pytest.raises(DataError) as info:
            call()
        assert_one_line(str(info.value), str(bad), "sha256 mismatch", "reinstall scikit-learn")


def test_digits_without_sklearn_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(harness_digits.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError) as info:
        harness_digits.fetch(tmp_path)
    assert_one_line(str(info.value), "pip install scikit-learn")


# ------------------------------------------------------------------------------------ fashion-mnist


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if fetch tries torchvision's download."""

    def forbidden(root, names):
        raise AssertionError(f"fetch tried to download {names}")

    monkeypatch.setattr(harness_fashion_mnist, "_try_torchvision", forbidden)


def require_debian_fashion() -> None:
    """Skip, saying why, where Debian's package is not installed (CI installs it and runs these)."""
    where = Path(harness_fashion_mnist.DEBIAN_DIR)
    if not where.is_dir():
        package = harness_fashion_mnist.DEBIAN_PACKAGE
        pytest.skip(f"Debian package {package} is not installed ({where} not found); "
                    f"`apt-get install {package}` runs this test")


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory) -> Path:
    """The four files fetched from the Debian package into a fresh root (download forbidden)."""
    require_debian_fashion()
    root = tmp_path_factory.mktemp("fashion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness_fashion_mnist, "_try_torchvision",
                   lambda root, names: pytest.fail(f"fetch tried to download {names}"))
        harness_fashion_mnist.fetch(root)
    return root


def test_fashion_fetch_copies_from_debian_package(fashion_root, no_download):
    raw = harness_fashion_mnist.raw_dir(fashion_root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(harness_fashion_mnist.FILES)  # no temp leftovers
    paths = harness_fashion_mnist.fetch(fashion_root)  # second time: verify only
    assert [p.name for p in paths] == list(harness_fashion_mnist.FILES) and all(p.parent == raw for p in paths)
    for p in paths:
        assert p.stat().st_size == harness_fashion_mnist.FILES[p.name][1]


@pytest.mark.parametrize("train, n", [(True, 60000), (False, 10000)])
def test_fashion_load(fashion_root, train, n):
    import torch

    x, y = harness_fashion_mnist.load(fashion_root, train)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [n // 10] * 10  # Fashion-MNIST is exactly balanced
    assert int(y[0]) == 9  # ankle boot, in both splits
    if train:
        assert abs(float(x.mean()) - harness_fashion_mnist.MEAN) < 1e-4
        assert abs(float(x.std(unbiased=False)) - harness_fashion_mnist.STD) < 1e-4


def test_fashion_corrupt_file_refused_not_replaced(fashion_root, tmp_path, no_download):
    raw = harness_fashion_mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in harness_fashion_mnist.FILES:
        shutil.copyfile(harness_fashion_mnist.raw_dir(fashion_root) / name, raw / name)
    bad = raw / "train-labels-idx1-ubyte"
    flip_byte(bad)
    before = bad.read_bytes()
    with pytest.raises(DataError) as info:
        harness_fashion_mnist.fetch(tmp_path)
    assert_one_line(str(info.value), str(bad), "corrupt or truncated", "harness data fetch fashion-mnist")
    assert bad.read_bytes() == before


def test_fashion_truncated_file_refused_even_when_others_missing(tmp_path, no_download):
    raw = harness_fashion_mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x27\x10")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*harness data fetch fashion-mnist"):
        harness_fashion_mnist.fetch(tmp_path)


def test_fashion_nothing_available_gives_one_line_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(harness_fashion_mnist, "DEBIAN_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(harness_fashion_mnist, "_try_torchvision", lambda root, names: "torchvision download failed (X)")
    root = tmp_path / "fresh"  # fetch must create it
    with pytest.raises(DataError) as info:
        harness_fashion_mnist.fetch(root)
    raw = harness_fashion_mnist.raw_dir(root)
    assert_one_line(str(info.value), "not installed", "torchvision download failed",
                    "apt-get install dataset-fashion-mnist", "harness data fetch fashion-mnist", str(raw))
    assert raw.is_dir() and list(raw.iterdir()) == []


def test_fashion_bad_debian_file_is_not_copied(tmp_path, monkeypatch):
    fake = tmp_path / "deb"
    fake.mkdir()
    with gzip.open(fake / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\x00" * 70000)  # larger than the real file: stops at the size cap
    monkeypatch.setattr(harness_fashion_mnist, "DEBIAN_DIR", fake)
    monkeypatch.setattr(harness_fashion_mnist, "_try_torchvision", lambda root, names: "torchvision download failed (X)")
    with pytest.raises(DataError) as info:
        harness_fashion_mnist.fetch(tmp_path / "root")
    assert_one_line(str(info.value), "train-labels-idx1-ubyte in", "does not match the pinned sha256")
    assert list(harness_fashion_mnist.raw_dir(tmp_path / "root").iterdir()) == []


# ------------------------------------------------------------------------------------------ cifar10


class Canary:
    """Unpickling this creates ``path``: proof that a file was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cifar_pins_match_torchvision():
    import torchvision

    cls = torchvision.datasets.CIFAR10
    published = dict(cls.train_list + cls.test_list)
    published[cls.meta["filename"]] = cls.meta["md5"]
    assert published == harness_cifar10.FILES
    assert cls.tgz_md5 == harness_cifar10.ARCHIVE_MD5 and cls.filename == harness_cifar10.ARCHIVE
    assert cls.base_folder == harness_cifar10.BASE_FOLDER


def test_cifar_missing_gives_one_line_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(harness_cifar10, "_try_torchvision", lambda root, names: "torchvision download failed (URLError)")
    root = tmp_path / "fresh"  # fetch must create it
    with pytest.raises(DataError) as info:
        harness_cifar10.fetch(root)
    assert_one_line(str(info.value), "torchvision download failed", "cifar-10-python.tar.gz",
                    str(root), "harness data fetch cifar10")
    assert harness_cifar10.batches_dir(root).is_dir()
    with pytest.raises(DataError, match="missing; run `harness data fetch cifar10`"):
        harness_cifar10.load(root, True)


def test_cifar_wrong_content_refused_before_unpickling(tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    folder = harness_cifar10.batches_dir(tmp_path / "root")
    folder.mkdir(parents=True)
    for name in harness_cifar10.FILES:
        (folder / name).write_bytes(pickle.dumps(Canary(marker)))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(harness_cifar10, "_try_torchvision", lambda root, names: pytest.fail("download tried"))
    with pytest.raises(DataError) as info:
        harness_cifar10.fetch(tmp_path / "root")
    assert_one_line(str(info.value), str(folder / "data_batch_1"), "md5 mismatch", "harness data fetch cifar10")
    for train in (True, False):
        with pytest.raises(DataError, match="data_batch_1 is corrupt"):
            harness_cifar10.load(tmp_path / "root", train)
    assert not marker.exists()


def test_cifar_load_converts_verified_batches(tmp_path, monkeypatch):
    """The load path on a tiny dataset in CIFAR-10's format, with md5 pins swapped for its own."""
    import numpy as np
    import torch
    import torchvision

    folder = harness_cifar10.batches_dir(tmp_path)
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    pins = {}
    for i, name in enumerate(harness_cifar10.TRAIN_FILES + harness_cifar10.TEST_FILES):
        data = rng.randint(0, 256, size=(2, 3072), dtype=np.uint8)
        data[0, 0], data[1, 1] = 0, 255
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": [i, 9 - i]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(10)]}))
    for name in harness_cifar10.FILES:
        pins[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(harness_cifar10, "FILES", pins)
    monkeypatch.setattr(cls, "train_list", [[n, pins[n]] for n in harness_cifar10.TRAIN_FILES])
    monkeypatch.setattr(cls, "test_list", [[n, pins[n]] for n in harness_cifar10.TEST_FILES])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": pins["batches.meta"]})

    assert len(harness_cifar10.fetch(tmp_path)) == 7
    x, y = harness_cifar10.load(tmp_path, True)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    first = pickle.loads((folder / "data_batch_1").read_bytes())["data"][0]
    assert torch.equal(x[0], torch.from_numpy(first.reshape(3, 32, 32)).float() / 255)  # channel-first
    x_test, y_test = harness_cifar10.load(tmp_path, False)
    assert x_test.shape == (2, 3, 32, 32) and y_test.tolist() == [5, 4]
