"""The run directory's layout, in one place: what ``harness run --out OUT`` writes and what the
reporters read.

    OUT/results.csv                          one row per cell (harness.results.table)
    OUT/run.json                             what produced the directory, one entry per invocation
    OUT/suite.toml                           the suite as it was run
    OUT/models/KEY-seedS-HASH.safetensors    trained models, each with its KEY-seedS-HASH.json sidecar
    OUT/examples/CONFIG_HASH.safetensors     per-image outcomes of one cell (worst case, convergence test, compare)
    OUT/.harness.lock                        locked by the `harness run` writing the directory (its pid@host)

Every path is built here and checked to stay under ``OUT``: names that come from a suite (model
keys) cannot point elsewhere, whatever they hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError


RESULTS_FILE = "results.csv"
RUN_FILE = "run.json"
SUITE_COPY = "suite.toml"
MODELS = "models"
EXAMPLES = "examples"
LOCK_FILE = ".harness.lock"
# replace_atomically's temporary files (".NAME-XXXXXXXX"), left behind only by a killed process
_TEMPORARY = re.compile(r"^\..+\.(csv|json|safetensors|toml)-[A-Za-z0-9_]+$")


def under(root: Path, path: Path, what: str, folder: Path | None = None) -> Path:
    """``path`` made absolute, after checking that it stays inside ``root`` (symbolic links and
    ``..`` resolved) and, given a ``folder``, lies directly in it: the last guard before a file is
    written or read for a name from a suite."""
    base, resolved = Path(root).resolve(), Path(path).resolve()
    inside = resolved != base and base in resolved.parents
    if not inside or (folder is not None and resolved.parent != Path(folder).resolve()):
        where = base if not inside or folder is None else Path(folder).resolve()
        raise HarnessError(f"{what} {path} would lie outside {where}; use names of letters, digits, '.', '_' "
                           f"and '-'")
    return resolved


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (nothing is created by building one)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def results(self) -> Path:
        return self.root / RESULTS_FILE

    @property
    def record(self) -> Path:
        return self.root / RUN_FILE

    @property
    def suite_copy(self) -> Path:
        return self.root / SUITE_COPY

    @property
    def models(self) -> Path:
        return self.root / MODELS

    @property
    def examples(self) -> Path:
        return self.root / EXAMPLES

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    def model(self, key: str, seed: int, model_hash: str) -> Path:
        """A trained model's weights; its sidecar is ``.with_suffix(".json")``."""
        path = self.models / f"{key}-seed{int(seed)}-{model_hash}.safetensors"
        return under(self.root, path, f"model '{key}':", self.models)

    def cell_examples(self, config_hash: str) -> Path:
        """One cell's per-image outcomes."""
        return under(self.root, self.examples / f"{config_hash}.safetensors", "examples file", self.examples)

    def remove_temporaries(self) -> None:
        """Temporary files a killed run left next to the files it was replacing."""
        for directory in (self.root, self.models, self.examples):
            if directory.is_dir():
                for path in directory.iterdir():
                    if _TEMPORARY.match(path.name) and path.is_file():
                        path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(run_dir: RunDir) -> Iterator[Path]:
    """Hold ``OUT/.harness.lock`` for the block, creating ``OUT``: a second run into the same
    directory gets a one-line error naming the first's ``pid@host`` instead of doing the same work
    and rewriting the same files. The lock is an exclusive ``flock`` on the file, taken before its
    text is written and held until the block ends; the kernel drops it when the process dies, so a
    lock file left by a killed run (whatever it holds) never blocks the next. The file is removed
    at the end of the block."""
    make_root(run_dir)
    path = run_dir.lock
    while True:
        handle = _open(path, os.O_RDWR | os.O_CREAT)
        try:
            _lock(handle, run_dir)
            if _same_file(handle, path):
                break
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)  # the holder removed this file between our open and our lock: open the new one
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _same_file(handle, path):  # still locked: whoever opened it finds it gone and opens the next
                path.unlink()
        os.close(handle)


def check_unlocked(run_dir: RunDir) -> None:
    """A one-line error when another run holds the run directory's lock (see :func:`run_lock`), or
    when the directory cannot be written or created (a read-only parent): the checks a command makes
    before it prints anything, so that the error is its only line. Creates nothing."""
    _check_writable(run_dir)
    try:
        handle = _open(run_dir.lock, os.O_RDONLY)
    except FileNotFoundError:
        return  # no run has the directory (or one just finished)
    try:
        _lock(handle, run_dir)
    finally:
        os.close(handle)  # closing drops a lock taken only to look


def _check_writable(run_dir: RunDir) -> None:
    """The one-line error of :func:`make_root`, foreseen: the run directory, or the closest of its
    parents that exists, is not a directory this process can write in."""
    path = run_dir.root.absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        reason = f"{existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is read-only"
    else:
        return
    raise HarnessError(f"--out {run_dir.root}: cannot write the run directory ({reason}); pass an --out where "
                       f"you can write")


def make_root(run_dir: RunDir) -> None:
    """Create the run directory (and its parents), or a one-line error saying why it cannot be."""
    try:
        run_dir.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"--out {run_dir.root}: cannot create the run directory ({exc.strerror or exc}); "
                           f"pass an --out where you can write") from None


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise HarnessError(f"{path}: cannot open the run lock ({exc.strerror or exc}); use another --out "
                           f"or fix the permissions") from None


def _lock(handle: int, run_dir: RunDir) -> None:
    """An exclusive lock on ``handle``, or the one-line error naming the run that holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise HarnessError(f"{run_dir.root}: another `harness run` (pid {_holder(handle)}) is writing this "
                           f"directory; wait for it to finish or use another --out") from None


def _same_file(handle: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``handle`` (a finishing run removes its lock)."""
    try:
        now, held = os.stat(path), os.fstat(handle)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _holder(handle: int) -> str:
    """The ``pid@host`` the holder of the lock wrote into it (it writes just after locking)."""
    try:
        text = os.pread(handle, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return " ".join(text.split())[:200] or "not yet written"

