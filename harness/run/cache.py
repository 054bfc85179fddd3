"""The cross-run cache of trained models, shared by every run directory and executor.

An entry is ``CACHE/<model_hash>.safetensors`` plus its JSON sidecar ``CACHE/<model_hash>.json``
(written last, so its presence means the pair is complete). ``model_hash`` is the hash of everything
that determines a trained model (:func:`model_identity`); the device is left out on purpose, so a
model trained on a GPU is reused on the CPU. Only safetensors and JSON are ever read back.

Location: ``--cache-dir``, else ``$HARNESS_CACHE``, else ``~/.cache/robustness-harness/models``
(``$XDG_CACHE_HOME`` respected); ``--no-cache`` / ``HARNESS_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.kit.atomic import replace_atomically
from harness.kit.paths import user_cache
from harness.registry import Entry, Registry, did_you_mean
from harness.suite.load import Suite, config_hash

WEIGHTS, SIDECAR = ".safetensors", ".json"


def default_cache_dir() -> Path:
    return user_cache("models")


def cache_dir(option: str | None, disabled: bool = False) -> Path | None:
    """The cache directory a run uses (None when turned off): --cache-dir, $HARNESS_CACHE, default."""
    if disabled:
        return None
    value = option or os.environ.get("HARNESS_CACHE")
    return (Path(value).expanduser() if value else default_cache_dir()).absolute()


def model_identity(suite: Suite, registry: Registry, dataset: str, key: str, seed: int) -> tuple[dict, str]:
    """Everything that determines a trained model, and its hash (``model_hash`` in rows and file names).

    The suite's model configuration (dataset name and content fingerprint, train_size, model plugin
    and options, learner stages with their options, seed), the dataset's shape and statistics, and
    the versions of torch, the harness and the distributions of the plugins involved. Not the device.
    """
    component = suite.models[key]
    used = [registry.datasets.entry(dataset), registry.models.entry(component.plugin),
            *(registry.learners.entry(s.learner) for s in component.stages)]
    config = {**suite.model_config(dataset, key, seed),
              "info": asdict(registry.datasets.get(dataset).info),
              "versions": {"harness": __version__, "torch": _version("torch"), **_plugin_versions(used)}}
    return config, config_hash(config)


def _version(distribution: str) -> str | None:
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    # "2.3.1+cu121" and "2.3.1+cpu" are the same release: a GPU-trained model must stay reusable on the CPU
    return version.split("+", 1)[0]


def _plugin_versions(used: list[Entry]) -> dict[str, str | None]:
    """``distribution -> version`` of the plugins that registered the records used; a plugin with no
    distribution (registered in code) is named instead, with no version to pin."""
    versions: dict[str, str | None] = {}
    for entry in used:
        if entry.distribution:
            versions[entry.distribution] = _version(entry.distribution)
        else:
            versions[f"plugin {entry.plugin}"] = None
    return versions


@dataclass(frozen=True)
class CacheEntry:
    """One cached model, as ``harness cache ls`` shows it."""

    hash: str
    model: str          # the model key in the suite that trained it
    dataset: str
    learners: str       # stage learners, "hebbian > backprop"
    seed: int | None
    size: int           # bytes, weights and sidecar
    created: str        # ISO time the entry was stored
    last_used: str      # ISO time a run last took it from the cache


class ModelCache:
    """Trained models keyed by ``model_hash``; every write is atomic (harness.kit.atomic)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def weights(self, model_hash: str) -> Path:
        from harness.results.rundir import under

        return under(self.root, self.root / f"{model_hash}{WEIGHTS}", "model cache entry", self.root)

    def find(self, model_hash: str) -> Path | None:
        """The cached weights for ``model_hash`` (marked as used now), or None."""
        weights = self.weights(model_hash)
        if not (weights.is_file() and weights.with_suffix(SIDECAR).is_file()):
            return None
        try:
            os.utime(weights)  # the weights' mtime is the entry's "last used"
        except OSError:  # a read-only cache is still a cache
            pass
        return weights

    def fetch(self, model_hash: str, destination: Path) -> bool:
        """Copy a cached model to ``destination`` (weights, then sidecar); False when not cached."""
        source = self.find(model_hash)
        if source is None:
            return False
        _copy_pair(source, destination)
        return True

    def store(self, model_hash: str, source: Path) -> None:
        """Copy a saved model (``source`` and its sidecar) into the cache, stamped with when."""
        sidecar = json.loads(Path(source).with_suffix(SIDECAR).read_text())
        sidecar["cached"] = _now()
        weights = self.weights(model_hash)
        replace_atomically(weights, lambda tmp: shutil.copyfile(source, tmp))
        text = json.dumps(sidecar, indent=2, sort_keys=True, default=str)
        replace_atomically(weights.with_suffix(SIDECAR), lambda tmp: Path(tmp).write_text(text))

    def entries(self) -> list[CacheEntry]:
        if not self.root.is_dir():
            return []
        found = []
        for sidecar in sorted(self.root.glob(f"[!.]*{SIDECAR}")):
            weights = sidecar.with_suffix(WEIGHTS)
            if weights.is_file():
                found.append(_entry(weights, sidecar))
        return found

    def resolve(self, given: list[str]) -> list[str]:
        """Full hashes for the given hashes or unique prefixes; every one is checked before any is used."""
        known = [e.hash for e in self.entries()]
        resolved = []
        for text in given:
            matches = [h for h in known if h.startswith(text)] if text else []
            if len(matches) > 1:
                raise HarnessError(f"hash '{text}' is ambiguous in {self.root}: {', '.join(matches)}")
            if not matches:
                hint = did_you_mean(text, known) if known else "; the cache is empty"
                raise HarnessError(f"no cached model '{text}' in {self.root}{hint} (see `harness cache ls`)")
            resolved.append(matches[0])
        return resolved

    def remove(self, model_hash: str) -> None:
        weights = self.weights(model_hash)
        weights.with_suffix(SIDECAR).unlink(missing_ok=True)  # sidecar first: the entry is gone at once
        weights.unlink(missing_ok=True)

    def unused_for(self, days: float) -> list[str]:
        """Hashes of the entries not used in the last ``days`` days."""
        limit = time.time() - days * 86400
        return [e.hash for e in self.entries() if self.weights(e.hash).stat().st_mtime < limit]


def _copy_pair(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(destination.with_suffix(WEIGHTS), lambda tmp: shutil.copyfile(source, tmp))
    replace_atomically(destination.with_suffix(SIDECAR),
                       lambda tmp: shutil.copyfile(source.with_suffix(SIDECAR), tmp))


def _entry(weights: Path, sidecar_path: Path) -> CacheEntry:
    try:
        sidecar: dict[str, Any] = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        sidecar = {}
    config = sidecar.get("config") or {}
    stages = config.get("stages") or []
    stat = weights.stat()
    return CacheEntry(hash=weights.stem, model=str(sidecar.get("model_key", "?")),
                      dataset=str(config.get("dataset", "?")),
                      learners=" > ".join(str(s.get("learner", "?")) for s in stages) or "?",
                      seed=config.get("seed"), size=stat.st_size + sidecar_path.stat().st_size,
                      created=str(sidecar.get("cached") or _iso(sidecar_path.stat().st_mtime)),
                      last_used=_iso(stat.st_mtime))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")
