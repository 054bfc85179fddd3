"""Fashion-MNIST dataset plugin (Zalando Research's drop-in replacement for MNIST).

The data lives as the four original, uncompressed IDX files in ``ROOT/FashionMNIST/raw/``, where
``torchvision.datasets.FashionMNIST(ROOT, download=False)`` looks for them. The files are pinned by
sha256 of their uncompressed content.

Fetching takes, for each missing file, the first source that works:

1. Debian's package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), which
   installs the four files gzip-compressed in ``/usr/share/datasets/fashion-mnist/``. Debian
   recompressed them, so the ``.gz`` files do not match the md5 values torchvision publishes for the
   upstream archives; their decompressed content does match the pinned sha256 values, which is what
   we check.
2. torchvision's own download (needs the internet).

Loading parses the verified IDX files directly (a 16- or 8-byte header and raw bytes) instead of
going through torchvision, whose MNIST classes prefer a legacy ``processed/*.pt`` file when one
exists and would then bypass the verified raw files.

This module imports neither torch nor torchvision nor numpy at import time.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from harness import hookimpl
from harness.api import DataInfo, Dataset
from harness.kit.datafiles import PinnedFiles, load_idx_images, say, torchvision_download

NAME = "fashion-mnist"

# name -> (sha256, size in bytes) of the uncompressed IDX file. Computed from the Debian package
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 after checking the IDX headers (magic 2049/2051,
# 60000 / 10000 items, 28x28, first training label 9 = ankle boot); they agree with hashes other
# projects derived from the upstream archives whose md5 matches torchvision's.
FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts the .gz files
DOWNLOAD_SOCKET_TIMEOUT_S = 20  # torchvision's urllib calls have no timeout of their own
FIX = f"delete it and run `harness data fetch {NAME}`"

# Train-set statistics of the pixel values scaled to [0, 1] (all 60 000 x 784 pixels, population std).
MEAN, STD = 0.2860, 0.3530

PINNED = PinnedFiles(FILES, FIX)
FINGERPRINT = PINNED.fingerprint(NAME)
verify = PINNED.verify  # raises a one-line DataError naming the file and FIX; never replaces it


def raw_dir(root: Path) -> Path:
    """Where torchvision's FashionMNIST class reads the IDX files from."""
    return Path(root) / "FashionMNIST" / "raw"


def _try_debian(root: Path, names: list[str]) -> str | None:
    """Copy ``names`` from the Debian package's folder, decompressing ``.gz`` files (an uncompressed
    copy there is accepted too). Returns None on success, else a short reason."""
    src_dir = Path(DEBIAN_DIR)
    if not src_dir.is_dir():
        return f"Debian package {DEBIAN_PACKAGE} not installed ({src_dir} not found)"
    say(f"copying Fashion-MNIST from {src_dir} ...")
    problems = []
    for name in names:  # each file on its own: one bad file does not stop the others
        dest = raw_dir(root) / name
        try:
            if (src_dir / name).is_file():
                ok = PINNED.copy_file_in(src_dir / name, dest)
            elif (src_dir / f"{name}.gz").is_file():
                with gzip.open(src_dir / f"{name}.gz", "rb") as src:
                    ok = PINNED.copy_in(src, dest)  # capped at the pinned size: no decompression bomb
            else:
                problems.append(f"{src_dir} has no {name}.gz")
                continue
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            problems.append(f"cannot read {name} from {src_dir} ({type(exc).__name__})")
            continue
        if not ok:
            problems.append(f"{name} in {src_dir} does not match the pinned sha256")
    return ", ".join(problems) or None


def _try_torchvision(root: Path, names: list[str]) -> str | None:
    """torchvision's download, staged (see :func:`harness.kit.datafiles.torchvision_download`).
    Returns None on success, else a short reason."""
    return torchvision_download("FashionMNIST", root, raw_dir, names, PINNED.copy_file_in, DOWNLOAD_SOCKET_TIMEOUT_S)


def fetch(root: Path) -> list[Path]:
    """Make sure the four IDX files are in ``root/FashionMNIST/raw`` and match their pinned hashes.

    Present files are verified first and a bad one stops everything; only missing files are taken
    from the Debian package or downloaded. ``root`` is created when it does not exist.
    """
    root = Path(root).expanduser()
    raw = raw_dir(root)
    return PINNED.fetch(raw, root, (_try_debian, _try_torchvision), lambda reasons: (
        f"cannot fetch Fashion-MNIST ({'; '.join(reasons)}); install the Debian package {DEBIAN_PACKAGE} "
        f"(`apt-get install {DEBIAN_PACKAGE}`) and run `harness data fetch {NAME}` again, "
        f"or place the four files {', '.join(FILES)} (uncompressed IDX) in {raw} by hand"
    ))


def load(root: Path, train: bool):
    """Return ``(x, y)``: float32 images in [0, 1] shaped [N, 1, 28, 28] and int64 labels.

    Hashes are not checked again: ``fetch`` has run before ``load`` by contract.
    """
    prefix, n = ("train", 60000) if train else ("t10k", 10000)
    return load_idx_images(raw_dir(Path(root).expanduser()), prefix, n, (28, 28), FIX)


@hookimpl
def harness_register_datasets(register):
    register(
        Dataset(
            name=NAME,
            fetch=fetch,
            load=load,
            info=DataInfo((1, 28, 28), 10, MEAN, STD),
            fingerprint=FINGERPRINT,
            description="Zalando's Fashion-MNIST clothing images, 60 000 train / 10 000 test, 28x28 grey",
        )
    )
