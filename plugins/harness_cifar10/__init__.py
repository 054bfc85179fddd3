"""CIFAR-10 dataset plugin, in torchvision's layout: ``ROOT/cifar-10-batches-py/``.

The batches are Python pickles, and unpickling runs code chosen by whoever wrote the file. So every
file is checked against its pinned md5 (the values torchvision publishes in
``torchvision.datasets.CIFAR10.train_list`` / ``test_list`` / ``meta``, copied here so a torchvision
upgrade cannot change them silently) before anything is unpickled: ``fetch`` verifies all seven
files, and ``load`` verifies them again itself before handing the folder to torchvision (which, in
0.29, also checks the md5 of every batch and of ``batches.meta`` before its ``pickle.load``; we do
not rely on that).

Fetching uses torchvision's download (163 MB, needs the internet; it checks the archive's md5 before
extracting) into a private staging folder, then moves over only verified files.

This module imports neither torch nor torchvision at import time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness import hookimpl
from harness.api import DataInfo, Dataset
from harness.errors import DataError
from harness.kit.datafiles import md5_of, missing_files, say, torchvision_download

NAME = "cifar10"
BASE_FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"

TRAIN_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
TEST_FILES = ["test_batch"]
# name -> md5, as published by torchvision (the archive's own files).
FILES: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

DOWNLOAD_SOCKET_TIMEOUT_S = 20  # torchvision's urllib calls have no timeout of their own
FIX = f"delete it and run `harness data fetch {NAME}`"

# Scalar statistics over all three channels of the train set, pixel values in [0, 1]. Not computed
# here (the data cannot be fetched on this project's machines): derived from the widely published
# per-channel train-set values mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
# The pooled mean is the average of the channel means (equal pixel counts): 0.4734. The pooled std
# is sqrt(mean of channel variances + variance of channel means) = sqrt(0.062912 + 0.000375): 0.2516
# (the plain average of the three stds, 0.2507, would ignore the spread between channel means).
MEAN, STD = 0.4734, 0.2516

FINGERPRINT = "cifar10:" + hashlib.sha256("".join(FILES.values()).encode()).hexdigest()[:16]


def batches_dir(root: Path) -> Path:
    """Where torchvision's CIFAR10 class reads the batches from."""
    return Path(root) / BASE_FOLDER


def verify(path: Path) -> None:
    """Raise a one-line DataError if ``path`` does not hold the pinned content. Reads bytes only."""
    if md5_of(path) == FILES[path.name]:
        return
    raise DataError(f"{path} is corrupt or truncated ({path.stat().st_size} bytes, md5 mismatch); {FIX}")


def _move_verified(src: Path, dest: Path) -> bool:
    """Rename ``src`` to ``dest`` if it matches the md5 pinned for its name; else leave it."""
    if not src.is_file() or md5_of(src) != FILES[src.name]:
        return False
    os.chmod(src, 0o644)
    os.replace(src, dest)
    return True


def _try_torchvision(root: Path, names: list[str]) -> str | None:
    """Let torchvision download and extract into a private staging folder, then move over only
    ``names`` once each matches its md5 (see :func:`harness.kit.datafiles.torchvision_download`).
    Returns None on success, else a short reason."""
    say(f"downloading CIFAR-10 ({ARCHIVE}, 163 MB) via torchvision ...")
    return torchvision_download("CIFAR10", root, batches_dir, names, _move_verified, DOWNLOAD_SOCKET_TIMEOUT_S, pin="md5")


def fetch(root: Path) -> list[Path]:
    """Make sure the seven files are in ``root/cifar-10-batches-py`` and match their pinned md5.

    Present files are verified first and a bad one stops everything; only missing files are
    downloaded. ``root`` is created when it does not exist. Nothing is unpickled here.
    """
    root = Path(root).expanduser()
    folder = batches_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (folder / name).is_file():
            verify(folder / name)
    reasons = []
    missing = missing_files(folder, FILES)
    if missing:
        reason = _try_torchvision(root, missing)
        if reason:
            reasons.append(reason)
    if missing_files(folder, FILES):
        raise DataError(
            f"cannot fetch CIFAR-10 ({'; '.join(reasons)}); download {ARCHIVE} (md5 {ARCHIVE_MD5}) on a machine "
            f"with internet and extract it into {root} (giving {folder}/data_batch_1 ...), "
            f"or run `harness data fetch {NAME}` on a machine with internet and copy {folder} here"
        )
    paths = [folder / name for name in FILES]
    for path in paths:
        verify(path)
    return paths


def load(root: Path, train: bool):
    """Return ``(x, y)``: float32 images in [0, 1] shaped [N, 3, 32, 32] and int64 labels.

    Every file torchvision will unpickle is verified first, whatever ``fetch`` did before.
    """
    folder = batches_dir(Path(root).expanduser())
    for name in FILES:  # torchvision unpickles batches.meta for either split
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing; run `harness data fetch {NAME}`")
        verify(path)

    import torch
    import torchvision

    ds = torchvision.datasets.CIFAR10(str(folder.parent), train=train, download=False)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255).contiguous()
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return x, y


@hookimpl
def harness_register_datasets(register):
    register(
        Dataset(
            name=NAME,
            fetch=fetch,
            load=load,
            info=DataInfo((3, 32, 32), 10, MEAN, STD),
            fingerprint=FINGERPRINT,
            description="CIFAR-10 colour images in 10 classes, 50 000 train / 10 000 test, 32x32 RGB",
        )
    )
