"""The run directory's layout, in one place: what ``harness run --out OUT`` writes and what the
reporters read.

    OUT/results.csv                          one row per cell (harness.results)
    OUT/run.json                             what produced the directory, one entry per invocation
    OUT/suite.toml                           the suite as it was run
    OUT/models/KEY-seedS-HASH.safetensors    trained models, each with its KEY-seedS-HASH.json sidecar
    OUT/examples/CONFIG_HASH.safetensors     per-image outcomes of one cell (worst case, convergence test, compare)
    OUT/.harness.lock                        the pid of the `harness run` writing the directory

Every path is built here and checked to stay under ``OUT``: names that come from a suite (model
keys) cannot point elsewhere, whatever they hold.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from harness.errors import HarnessError
from harness.suite import NO_DEFENSE

if TYPE_CHECKING:  # pragma: no cover
    from harness.registry import Registry

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
    """Hold ``OUT/.harness.lock`` (``pid@host``) for the block, creating ``OUT``: a second run into
    the same directory gets a one-line error naming the first's pid instead of doing the same work
    and rewriting the same files. A lock whose process is gone (same host, pid not alive) is stale
    and taken over. The lock is removed at the end of the block."""
    run_dir.root.mkdir(parents=True, exist_ok=True)
    path, me = run_dir.lock, f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(3):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            check_unlocked(run_dir)
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as lock:
            lock.write(me + "\n")
        break
    else:
        raise HarnessError(f"{path}: cannot take the run lock; remove the file if no `harness run` uses {run_dir.root}")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == me:
                path.unlink()


def check_unlocked(run_dir: RunDir) -> None:
    """A one-line error when a live process holds the run directory's lock (see :func:`run_lock`)."""
    path = run_dir.lock
    holder = _holder(path) if path.exists() else None
    if holder is not None:
        raise HarnessError(f"{run_dir.root}: another `harness run` (pid {holder}) is writing this directory; "
                           f"wait for it to finish or use another --out (if that process is gone, remove {path})")


def _holder(path: Path) -> str | None:
    """The ``pid@host`` holding the lock file, or None when the lock is stale (its process is gone
    from this host, or the file is empty or unreadable garbage)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None  # released meanwhile: try again
    except OSError:  # unreadable: assume its writer is alive
        return "? (the lock file is unreadable)"
    pid_text, _, host = text.partition("@")
    if not pid_text.isdigit():
        return None
    if host and host != socket.gethostname():
        return text  # another machine's process: it cannot be checked from here
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return pid_text
    return pid_text


def rescaler_defenses(registry: "Registry") -> set[str]:
    """Defense plugin names that never change a prediction (the bare model ``none`` included): their
    rows share the model's clean accuracy and are pooled into one worst case (harness.diagnostics)."""
    return {NO_DEFENSE} | {e.obj.name for e in registry.entries("defenses") if e.obj.rescaler}
