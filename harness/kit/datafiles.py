"""Helpers for dataset plugins whose data is a fixed set of files pinned by hash.

A benchmark whose inputs can change silently is not a benchmark, so such a plugin pins every file
(sha256 and size) and refuses anything else. The parts of that which do not depend on the dataset
live here: hashing, verifying with a one-line error that says how to fix it, writing a fetched file
so that a half-written or wrong one never takes the final name, running torchvision's download
without letting it touch files already in place, and reading IDX files.

The core offers these to plugins; it never imports a plugin. Nothing heavy (torch, torchvision,
numpy, click) is imported at module import time: ``harness --help`` loads every plugin and must
stay quick.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError

CHUNK = 1 << 20  # hash and copy in 1 MiB pieces so a 47 MB file never sits in memory twice


def _digest_of(path: Path, digest) -> str:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    return _digest_of(path, hashlib.sha256())


def md5_of(path: Path) -> str:
    """md5 of a file, read in chunks: for data whose only published pins are md5 values (the flag
    keeps FIPS builds of Python from refusing it)."""
    return _digest_of(path, hashlib.md5(usedforsecurity=False))


def say(message: str) -> None:
    """Progress goes to stderr so stdout stays machine-readable."""
    import click

    click.echo(message, err=True)


def missing_files(folder: Path, names: Iterable[str]) -> list[str]:
    """The ``names`` that are not a regular file in ``folder``, in order."""
    return [name for name in names if not (Path(folder) / name).is_file()]


def atomic_write(stream, dest: Path, expected_sha256: str, max_bytes: int | None = None) -> bool:
    """Copy the binary ``stream`` to ``dest`` through a temp file in the same folder and
    ``os.replace``, so an interrupted fetch never leaves a partial file under the final name.

    Writes nothing and returns False when the content does not hash to ``expected_sha256`` or grows
    past ``max_bytes`` (a decompression bomb stops there instead of filling the disk).
    """
    digest = hashlib.sha256()
    written = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    return False
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            return False
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are not secret
        os.replace(tmp, dest)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class PinnedFiles:
    """The files a dataset consists of, ``name -> (sha256, size in bytes)``, and the fix to name in
    every error (e.g. "delete it and run `harness data fetch mnist`")."""

    files: Mapping[str, tuple[str, int]]
    fix: str

    def verify(self, path: Path) -> None:
        """Raise a one-line DataError if ``path`` does not hold the pinned content of its name.

        A bad file is never replaced silently: it may be the user's own copy, and overwriting it
        would hide whatever produced it.
        """
        expected_hash, expected_size = self.files[path.name]
        if sha256_of(path) == expected_hash:
            return
        size = path.stat().st_size
        raise DataError(
            f"{path} is corrupt or truncated ({size} bytes, expected {expected_size}, sha256 mismatch); {self.fix}"
        )

    def missing(self, folder: Path) -> list[str]:
        """Names of the pinned files not present in ``folder``."""
        return missing_files(folder, self.files)

    def fingerprint(self, prefix: str) -> str:
        """``prefix:`` and 16 hex digits that change whenever any pinned hash does."""
        joined = "".join(h for h, _ in self.files.values())
        return f"{prefix}:" + hashlib.sha256(joined.encode()).hexdigest()[:16]

    def copy_in(self, stream, dest: Path) -> bool:
        """:func:`atomic_write` of ``stream`` to ``dest`` against the pin of ``dest.name``; nothing
        larger than the pinned size is ever written."""
        expected_hash, size = self.files[dest.name]
        return atomic_write(stream, dest, expected_hash, size)

    def copy_file_in(self, src: Path, dest: Path) -> bool:
        """:meth:`copy_in` from a file."""
        with open(src, "rb") as stream:
            return self.copy_in(stream, dest)

    def fetch(
        self,
        folder: Path,
        root: Path,
        sources: Iterable[Callable[[Path, list[str]], str | None]],
        failure: Callable[[list[str]], str],
    ) -> list[Path]:
        """Make sure every pinned file is in ``folder`` (created if need be) and return their paths.

        Files already there are verified first and a bad one stops everything (see :meth:`verify`);
        only the missing ones are asked of each source in turn, as ``source(root, missing_names)``,
        which returns None or a short reason for failing. When files are still missing, raises a
        DataError with ``failure(reasons)``, the plugin's own one-line message saying what to do.
        """
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.files:
            if (folder / name).is_file():
                self.verify(folder / name)
        reasons = []
        for source in sources:
            missing = self.missing(folder)
            if not missing:
                break
            reason = source(root, missing)
            if reason:
                reasons.append(reason)
        if self.missing(folder):
            raise DataError(failure(reasons))
        paths = [folder / name for name in self.files]
        for path in paths:
            self.verify(path)
        return paths


def torchvision_download(
    dataset_class: str,
    root: Path,
    folder_of: Callable[[Path], Path],
    names: Iterable[str],
    move: Callable[[Path, Path], bool],
    timeout_s: float,
    pin: str = "sha256",
) -> str | None:
    """Let ``torchvision.datasets.<dataset_class>`` download into a private staging folder under
    ``root``, then ``move(staged_file, final_file)`` each of ``names`` (it returns False when the
    file does not match its pin).

    Staging keeps torchvision from overwriting files already in place and keeps its archives and
    leftovers out of the data folder; being under ``root`` makes a move a rename. torchvision's
    urllib calls have no timeout of their own, so a socket timeout of ``timeout_s`` is set for the
    download. ``folder_of(root)`` is where the dataset's files live below a root. Returns None on
    success, else a short reason (no URLs: those are noise here).
    """
    staging = Path(tempfile.mkdtemp(prefix=".torchvision-", dir=root))
    previous = socket.getdefaulttimeout()
    try:
        import torchvision

        socket.setdefaulttimeout(timeout_s)
        try:
            getattr(torchvision.datasets, dataset_class)(str(staging), train=True, download=True)
        except Exception as exc:  # any failure just means: no data from this source
            return f"torchvision download failed ({type(exc).__name__})"
        finally:
            socket.setdefaulttimeout(previous)
        for name in names:
            if not move(folder_of(staging) / name, folder_of(root) / name):
                return f"torchvision downloaded a {name} that does not match the pinned {pin}"
        return None
    except Exception as exc:
        return f"torchvision download failed ({type(exc).__name__})"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_idx(path: Path, magic: int, shape: tuple[int, ...], fix: str):
    """Read an IDX file of unsigned bytes (a big-endian ``magic`` and one count per dimension, then
    the data) as a read-only numpy uint8 array of ``shape``.

    The header and the length must match exactly, so a file of another dataset, split or format
    fails here with a one-line DataError naming ``path`` and ``fix`` instead of loading wrong data.
    """
    import numpy as np

    data = path.read_bytes()
    offset = 4 * (1 + len(shape))
    header = np.frombuffer(data, dtype=">u4", count=1 + len(shape)) if len(data) >= offset else None
    if header is None or int(header[0]) != magic or tuple(int(v) for v in header[1:]) != shape:
        raise DataError(f"{path} has an unexpected IDX header; {fix}")
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path} has {len(data) - offset} data bytes, expected {int(np.prod(shape))}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load_idx_images(folder: Path, prefix: str, count: int, size: tuple[int, int], fix: str):
    """Return ``(x, y)`` from ``folder/PREFIX-images-idx3-ubyte`` (magic 2051) and
    ``folder/PREFIX-labels-idx1-ubyte`` (magic 2049), the layout of MNIST and its drop-in
    replacements: float32 images in [0, 1] shaped ``[count, 1, *size]`` and int64 labels."""
    import torch

    pixels = read_idx(folder / f"{prefix}-images-idx3-ubyte", 2051, (count, *size), fix)
    targets = read_idx(folder / f"{prefix}-labels-idx1-ubyte", 2049, (count,), fix)
    x = torch.from_numpy(pixels.copy()).float().div_(255).unsqueeze(1).contiguous()
    y = torch.from_numpy(targets.astype("int64"))
    return x, y
