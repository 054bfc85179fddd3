"""Resuming a learner's long training after the process stops (a session ends, kill -9), for learner plugins.

A run resumes by cell and takes trained models from the cache, but a training that is stopped half-way
starts again from its first epoch: an hour of the thesis's BP schedule on 2 CPU cores. A learner that saves
its state now and then with :class:`Resumable` continues from the latest save instead, and ends exactly as
one uninterrupted training would (same weights to the last bit: the state holds everything the next epoch
reads, random generators included).

- :func:`training_key` names a training by everything that determines it: the learner, its options, the
  seed, the model's parameters and buffers as the stage starts, the training data, the device kind and
  torch's release. A different model, data or option is a different training; nothing stale is reused.
- :class:`Periodic` decides when: it saves when ``HARNESS_SNAPSHOT_SECONDS`` have passed since the last save
  (or since the training started). The Hebbian learner's snapshots use it too.
- :class:`Resumable` keeps one state file per training in the learner's state folder
  (``TrainContext.state_dir``, in the model cache under ``learner-state/``; none when the cache is off),
  written atomically every ``HARNESS_SNAPSHOT_SECONDS`` seconds of training (default 600; 0 saves after
  every epoch), and removed when the training ends (the trained model is then in the model cache).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

SECONDS_VAR = "HARNESS_SNAPSHOT_SECONDS"
DEFAULT_SECONDS = 600.0
FORMAT = "1"


def snapshot_seconds() -> float:
    """How often a training saves its state: ``HARNESS_SNAPSHOT_SECONDS`` (seconds, >= 0), default 600."""
    from harness.errors import HarnessError

    text = os.environ.get(SECONDS_VAR, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise HarnessError(f"{SECONDS_VAR}={text!r}: expected a number of seconds >= 0 (0: after every epoch)")
    return value


def _digest_tensor(hasher, tensor) -> None:
    import torch

    hasher.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
    hasher.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def training_key(learner: str, options: dict[str, Any], seed: int, model, tensors: dict[str, Any]) -> str:
    """What determines a training: the learner, its options, the seed, every parameter and buffer of ``model``
    as the stage starts, the data ``tensors`` (e.g. {"x": ..., "y": ...}), the device kind and torch's release."""
    import torch

    hasher = hashlib.sha256()
    first = next(iter(model.parameters()), None)
    identity = {"learner": learner, "options": options, "seed": seed, "format": FORMAT,
                "torch": torch.__version__.split("+", 1)[0],
                "device": first.device.type if first is not None else "cpu"}
    hasher.update(json.dumps(identity, sort_keys=True, default=str).encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        hasher.update(name.encode())
        _digest_tensor(hasher, tensor)
    for name in sorted(tensors):
        hasher.update(name.encode())
        _digest_tensor(hasher, tensors[name])
    return hasher.hexdigest()[:20]


class Periodic:
    """``periodic(save)`` calls ``save()`` when ``HARNESS_SNAPSHOT_SECONDS`` have passed since the last call that
    saved, or since this object was made; returns whether it saved."""

    def __init__(self) -> None:
        self.seconds = snapshot_seconds()
        self.last = time.monotonic()

    def __call__(self, save: Callable[[], object]) -> bool:
        if time.monotonic() - self.last < self.seconds:
            return False
        save()
        self.last = time.monotonic()
        return True


class Resumable:
    """One training's saved state: :meth:`load` what an earlier process saved, :meth:`maybe_save` at the end of
    each epoch (it saves when ``HARNESS_SNAPSHOT_SECONDS`` have passed since the last save), :meth:`finish` when
    the training has ended. A ``folder`` of None (no model cache) keeps nothing."""

    def __init__(self, folder: Path | None, key: str) -> None:
        self.path = None if folder is None else Path(folder) / f"{key}.pt"
        self.periodic = Periodic()

    def load(self) -> dict | None:
        import torch

        if self.path is None or not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file (cannot happen with atomic writes, but never worth a crash): start over
            return None

    def maybe_save(self, state) -> bool:
        """Save ``state()`` (a callable, so nothing is copied when no save is due); True when it saved."""
        return self.path is not None and self.periodic(lambda: self.save(state()))

    def save(self, state: dict) -> None:
        import torch

        from harness.kit.atomic import replace_atomically

        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        replace_atomically(self.path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
