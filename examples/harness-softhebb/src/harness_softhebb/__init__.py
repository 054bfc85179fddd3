"""SoftHebb as a harness learner: soft winner-take-all Hebbian learning of one weight matrix, without
labels (Moraitis et al. 2022; Journé et al., ICLR 2023). Freeze the layer in the suite and train a
head on top with ``backprop``, as for the built-in Krotov-Hopfield learner ``hebbian``::

    [[models.softhebb.stages]]
    learner = "softhebb"
    params = ["fc1.weight"]
    freeze = true
    temperature = 1.0

The rule itself lives in :mod:`harness_softhebb.rule`; this module is the plugin: the learner's
record (options, defaults, checks) and ``harness softhebb-stats``, a command printing the per-epoch
statistics stored with a trained model. Only ``harness`` names are imported at module level, so
loading the plugin costs nothing until a suite uses it.
"""

from __future__ import annotations

import math

import click

from harness import hookimpl
from harness.api import Learner, TrainContext

__version__ = "0.1.0"

DEFAULTS = {"lr": 0.01, "epochs": 10, "batch_size": 50, "temperature": 1.0, "init_std": 0.1,
            "anti_hebbian": False, "norm_lr": False, "inputs": "layer"}
PRESETS = {
    # Journé et al. (ICLR 2023): non-winners anti-Hebbian, rate scaled by |‖w‖ − 1|^0.5.
    "journe2023": {"anti_hebbian": True, "norm_lr": True},
}
INPUTS = {
    "layer": "what the layer receives inside the model (for repu: mean/std-normalised pixels)",
    "unit": "the layer's inputs scaled to unit Euclidean length (currents in [-1, 1]; use a small temperature)",
}


def check(options: dict) -> None:
    """Reject values the option types alone do not rule out (called when a suite is loaded)."""
    for key in ("lr", "temperature", "init_std"):
        if not (math.isfinite(options[key]) and options[key] > 0):
            raise ValueError(f"{key}: expected a positive number")
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")
    if options["inputs"] not in INPUTS:
        raise ValueError(f"inputs: expected one of {', '.join(map(repr, INPUTS))}, got {options['inputs']!r}")


def train(ctx: TrainContext) -> dict:
    """Train the stage's one weight matrix on what its layer receives; returns the per-epoch history."""
    from harness.errors import HarnessError
    from harness.kit.layers import layer_inputs
    from harness_softhebb.rule import train_softhebb

    if len(ctx.params) != 1 or next(iter(ctx.params.values())).dim() != 2:
        raise HarnessError(f"softhebb trains exactly one 2-D weight matrix per stage; got "
                           f"{', '.join(ctx.params)}; set params = [\"fc1.weight\"]")
    (name, weight), = ctx.params.items()
    options = dict(ctx.options)
    inputs = layer_inputs(ctx.model, name, ctx.x)
    if options.pop("inputs") == "unit":
        inputs = inputs / inputs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    advance = ctx.progress(options["epochs"], f"softhebb {name}")
    history = train_softhebb(weight.data, inputs, seed=ctx.seed, on_epoch=lambda s: advance(**s), **options)
    return {"history": history}


@click.command("softhebb-stats")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
def softhebb_stats(model_file: str) -> None:
    """Print the per-epoch SoftHebb statistics stored with MODEL_FILE (a NAME.safetensors file
    with its NAME.json)."""
    import json
    from pathlib import Path

    from harness.errors import HarnessError

    sidecar = Path(model_file).with_suffix(".json")
    try:
        stages = json.loads(sidecar.read_text())["stages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{sidecar}: not a trained model's sidecar ({type(exc).__name__}); pass the "
                           f".safetensors file of a model that `harness run` wrote") from None
    found = [stage for stage in stages if stage.get("learner") == "softhebb"]
    if not found:
        raise HarnessError(f"{model_file}: no softhebb stage in this model (stages: "
                           f"{', '.join(s.get('learner', '?') for s in stages) or 'none'})")
    columns = ("epoch", "norm_dev", "never_won", "winner_changes", "entropy")
    for stage in found:
        click.echo(f"softhebb on {', '.join(stage['params'])}")
        click.echo("  ".join(f"{c:>14}" for c in columns))
        for row in stage["stats"]["history"]:
            click.echo("  ".join(f"{row[c]:>14.4g}" if isinstance(row[c], float) else f"{row[c]:>14}"
                                 for c in columns))


@hookimpl
def harness_register_learners(register):
    register(Learner(name="softhebb", train=train, defaults=DEFAULTS, check=check, presets=PRESETS,
                     description="SoftHebb soft winner-take-all Hebbian learning (unsupervised, one layer)"))


@hookimpl
def harness_register_commands(register):
    register(softhebb_stats)
