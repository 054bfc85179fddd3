"""Snapshots of a Hebbian schedule, so that checkpoints along one long training cost one training.

A model whose Hebbian stage sets ``stop_after = E`` is the layer after the first E epochs of an
``epochs``-long schedule (the learning rate still decays over ``epochs``). Such a training saves its
whole state at its end (weights, the generator's state, the winners: what the next epoch reads); a
later training of the same schedule (same options but ``stop_after``, seed, inputs, step and shape)
continues from the latest snapshot at or before its own end instead of starting again. A suite that
names the checkpoints in ascending order (e.g. 20, 50, 100, then the full 1000) therefore trains 1000
epochs in all, and each checkpoint is exactly the layer an uninterrupted run has after that many epochs
(tests/plugins/hebbian/test_checkpoints.py).

The same snapshots are also taken during any training, every ``HARNESS_SNAPSHOT_SECONDS`` seconds (default
600, :mod:`harness.kit.resume`): a process stopped half-way (a session's end, kill -9) continues from the
latest one when the same training runs again, and a later checkpoint of the schedule can start from one.
They stay after the training ends (a few MB each; ``harness cache rm --all`` removes them).

Snapshots live in the learner's state folder in the model cache (``TrainContext.state_dir``), as
safetensors with their epoch and history in the header; a cache that is turned off keeps none.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from harness.kit.atomic import replace_atomically

FORMAT = "1"


def schedule_key(options: dict, step: str, seed: int, weight: torch.Tensor, inputs: torch.Tensor) -> str:
    """What determines the run up to any epoch: every option but ``stop_after``, the step actually
    run (``method = "auto"`` resolved), the seed, the layer's shape and dtype, the device kind, torch's
    release, and the inputs' content."""
    digest = hashlib.sha256(inputs.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    identity = {"options": {k: v for k, v in options.items() if k not in ("stop_after", "method")},
                "step": step, "seed": seed, "shape": list(weight.shape), "dtype": str(weight.dtype),
                "device": weight.device.type, "inputs": digest, "format": FORMAT,
                "torch": torch.__version__.split("+", 1)[0]}  # as the model hash: a new torch, a new run
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _path(folder: Path, key: str, epoch: int) -> Path:
    return folder / f"{key}-{epoch:06d}.safetensors"


def latest(folder: Path | None, key: str, stop: int) -> dict | None:
    """The saved state of this schedule with the largest epoch at or before ``stop``, or None."""
    if folder is None or not folder.is_dir():
        return None
    epochs = sorted(int(p.stem.rsplit("-", 1)[1]) for p in folder.glob(f"{key}-*.safetensors"))
    usable = [e for e in epochs if e <= stop]
    if not usable:
        return None
    from safetensors import safe_open

    with safe_open(str(_path(folder, key, usable[-1])), framework="pt") as handle:
        meta = handle.metadata()
        state = {name: handle.get_tensor(name) for name in ("weight", "generator", "winner", "won")}
    state["epoch"], state["history"] = int(meta["epoch"]), json.loads(meta["history"])
    return state


def save(folder: Path | None, key: str, state: dict) -> Path | None:
    """Store ``state`` (from ``train_hebbian``'s ``on_stop``) under its epoch; None when there is no folder."""
    if folder is None:
        return None
    from safetensors.torch import save_file

    tensors = {name: state[name].contiguous() for name in ("weight", "generator", "winner", "won")}
    meta = {"format": FORMAT, "epoch": str(state["epoch"]), "history": json.dumps(state["history"])}
    path = _path(folder, key, state["epoch"])
    replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def every(folder: Path | None, key: str):
    """``train_hebbian``'s ``on_state``: save the state when ``HARNESS_SNAPSHOT_SECONDS`` have passed since the
    last save (or the training's start); None (no periodic snapshots) without a state folder."""
    if folder is None:
        return None
    from harness.kit.resume import Periodic

    periodic = Periodic()
    return lambda get: periodic(lambda: save(folder, key, get()))
