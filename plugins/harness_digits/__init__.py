"""scikit-learn's 8x8 handwritten digits as a dataset plugin: tiny and local, meant for tests.

The data is the file ``sklearn/datasets/data/digits.csv.gz`` that scikit-learn ships (the UCI
"optical recognition of handwritten digits" test set: 1797 images, 8x8 pixels with values 0..16,
a label in the last column). Nothing is downloaded and nothing is written under the data root;
``fetch`` verifies that file against a pinned sha256 and returns its path. ``load`` reads the same
bytes, checks the hash again (the file is 57 kB) and parses the CSV itself, so it does not depend on
``sklearn.datasets.load_digits`` or on importing scikit-learn at all.

The split is fixed and documented: stratified, 20 % of each class to the test set. For each class
0..9 in turn, the indices (in file order) of that class are permuted by one
``numpy.random.RandomState(0)`` shared across classes, and the first ``round(0.2 * count)`` go to
test. Both splits are returned in file order. NumPy guarantees that the legacy ``RandomState``
stream never changes, and the resulting test indices are pinned by a hash too: ``load`` refuses to
return a different split. 1438 train / 359 test.

This module imports neither torch, numpy nor scikit-learn at import time.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
from pathlib import Path

from harness import hookimpl
from harness.api import DataInfo, Dataset
from harness.errors import DataError

NAME = "digits"

# sha256 and size of sklearn/datasets/data/digits.csv.gz as shipped in scikit-learn 1.9.1. A release
# that changes the file's bytes is refused (DataError) until this pin is reviewed and updated.
DATA_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
DATA_SIZE = 57523
N_SAMPLES = 1797
TEST_FRACTION = 0.2
SEED = 0
# sha256 of the comma-joined sorted test indices produced by the split described above.
TEST_INDEX_SHA256 = "ce074941173aae7d94695bb066816f71dbdcfe64dd1e8568ca00515a44632625"
N_TEST = 359

# Statistics of the train split, pixel values divided by 16 (population std over all pixels).
MEAN, STD = 0.3058, 0.3766

FIX = "reinstall scikit-learn (`pip install --force-reinstall scikit-learn`)"
FINGERPRINT = "digits:" + hashlib.sha256(f"{DATA_SHA256}:{TEST_INDEX_SHA256}".encode()).hexdigest()[:16]


def data_file() -> Path:
    """Path of scikit-learn's digits file, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"scikit-learn is not installed, and the {NAME} dataset is a file inside it; "
                        f"install it (`pip install scikit-learn`)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"


def _read_verified(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or type(exc).__name__}); {FIX}") from None
    if hashlib.sha256(data).hexdigest() != DATA_SHA256:
        raise DataError(f"{path} is corrupt or not the expected version ({len(data)} bytes, expected "
                        f"{DATA_SIZE}, sha256 mismatch); {FIX}")
    return data


def fetch(root: Path) -> list[Path]:
    """Verify scikit-learn's digits file and return its path. Nothing is downloaded; ``root`` is
    created (as other datasets do) but not used."""
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    path = data_file()
    _read_verified(path)
    return [path]


def split_indices(labels) -> tuple[list[int], list[int]]:
    """The fixed stratified split (see the module docstring): ``(train, test)`` index lists, sorted."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.RandomState(SEED)
    test: list[int] = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        k = int(round(TEST_FRACTION * len(members)))
        test.extend(int(i) for i in rng.permutation(members)[:k])
    test.sort()
    chosen = set(test)
    train = [i for i in range(len(labels)) if i not in chosen]
    return train, test


def _index_hash(indices: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()


def _parse(path: Path, data: bytes):
    import numpy as np

    try:
        table = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data))), delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} cannot be parsed ({type(exc).__name__}); {FIX}") from None
    if table.shape != (N_SAMPLES, 65) or table[:, :64].min() < 0 or table[:, :64].max() > 16 \
            or table[:, 64].min() < 0 or table[:, 64].max() > 9:
        raise DataError(f"{path} does not hold 1797 8x8 digits with values 0..16; {FIX}")
    return table[:, :64], table[:, 64]


def load(root: Path, train: bool):
    """Return ``(x, y)``: float32 images in [0, 1] (pixel / 16) shaped [N, 1, 8, 8] and int64
    labels, N = 1438 (train) or 359 (test)."""
    import torch

    path = data_file()
    pixels, labels = _parse(path, _read_verified(path))
    train_idx, test_idx = split_indices(labels)
    if _index_hash(test_idx) != TEST_INDEX_SHA256:
        raise DataError(f"the fixed {NAME} train/test split came out different (is NumPy's RandomState "
                        f"broken?); refusing to return a changed benchmark split")
    idx = train_idx if train else test_idx
    x = torch.from_numpy(pixels[idx]).to(torch.float32).div_(16).reshape(-1, 1, 8, 8).contiguous()
    y = torch.from_numpy(labels[idx]).to(torch.int64)
    return x, y


@hookimpl
def harness_register_datasets(register):
    register(
        Dataset(
            name=NAME,
            fetch=fetch,
            load=load,
            info=DataInfo((1, 8, 8), 10, MEAN, STD),
            fingerprint=FINGERPRINT,
            description="scikit-learn's 8x8 handwritten digits (shipped with scikit-learn, no download), "
                        "1438 train / 359 test, fixed stratified split; small, for tests",
        )
    )
