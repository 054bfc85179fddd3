"""Built-in learner ``hebbian``: Krotov & Hopfield (PNAS 2019), "Unsupervised learning by competing
hidden units". Trains one weight matrix without labels; freeze it in the suite and train a head on top.

Written by hand because no maintained library implements this rule (the authors' reference is a
notebook loop); the update itself lives in :mod:`harness_hebbian.rule`.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Learner, TrainContext

# Defaults are the paper's MNIST setting (2000 units): p = 3, k = 7, Delta = 0.4, eps0 = 0.04,
# minibatch 100, 1000 epochs, R = 1, weights initialised from N(0, 1).
DEFAULTS = {"p": 3.0, "k": 7, "delta": 0.4, "lr": 0.04, "epochs": 1000, "batch_size": 100,
            "init_mean": 0.0, "init_std": 1.0, "precision": 1e-30, "R": 1.0, "lr_decay": "linear",
            "anti_hebbian": "kth", "inputs": "layer", "currents": "published", "method": "auto",
            "ranking_dtype": "fp32"}

# Added after models were cached, so unset it stays out of the model hash (harness.api.Learner.optional):
# stop after this many epochs of the schedule (0: the whole schedule). See harness_hebbian.snapshots.
OPTIONAL = {"stop_after": 0}

THESIS = {"p": 2.0, "k": 2, "delta": 0.4, "lr": 0.02}
PRESETS = {
    # inputs = "pixels": the reference notebook learns from raw [0, 1] pixels, whatever the model feeds fc1.
    "krotov2019": {"p": 3.0, "k": 7, "delta": 0.4, "lr": 0.04, "batch_size": 100, "epochs": 1000, "inputs": "pixels"},
    "thesis": THESIS,
    # The thesis's appendix code, slip included: currents from W*|W|**p - 2, normalised pixels.
    "thesis-appendix": {**THESIS, "currents": "thesis-appendix", "inputs": "normalized"},
}

INPUTS = {
    "layer": "what the layer receives inside the model (for repu: mean/std-normalised pixels)",
    "pixels": "raw [0, 1] pixels, as in Krotov & Hopfield's reference code",
    "normalized": "pixels standardised with the dataset's mean and std",
    "unit": "the layer's inputs scaled to unit Euclidean length",
}


def _check(options: dict) -> None:
    from harness.kit.checks import one_of
    from harness_hebbian.rule import ANTI_HEBBIAN, CURRENTS, LR_DECAY, METHODS, RANKING_DTYPES

    if options["p"] < 1:
        raise ValueError("p: expected a number >= 1 (the l_p weighting exponent)")
    if options["k"] < 2:
        raise ValueError("k: expected an integer >= 2 (rank of the anti-Hebbian unit)")
    if not 0 <= options["delta"] <= 1:
        raise ValueError("delta: expected a number in [0, 1] (anti-Hebbian strength)")
    for key in ("lr", "init_std", "precision", "R"):
        if options[key] <= 0:
            raise ValueError(f"{key}: expected a positive number")
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")
    stop_after = options.get("stop_after", OPTIONAL["stop_after"])
    if not 0 <= stop_after <= options["epochs"]:
        raise ValueError(f"stop_after: expected an epoch between 1 and epochs = {options['epochs']} "
                         f"(0: the whole schedule), got {stop_after}")
    for key, allowed in (("lr_decay", LR_DECAY), ("anti_hebbian", ANTI_HEBBIAN), ("currents", CURRENTS),
                         ("inputs", tuple(INPUTS)), ("method", ("auto", *METHODS)),
                         ("ranking_dtype", RANKING_DTYPES)):
        one_of(options, key, allowed)


def _inputs(ctx: TrainContext, name: str, weight):
    """The vectors the rule learns from, as chosen by the ``inputs`` option."""
    from harness.errors import HarnessError
    from harness.kit.layers import layer_inputs

    kind = ctx.options["inputs"]
    if kind in ("layer", "unit"):
        x = layer_inputs(ctx.model, name, ctx.x)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) if kind == "unit" else x
    x = ctx.x.flatten(1)
    if x.shape[1] != weight.shape[1]:
        raise HarnessError(f"hebbian: inputs = \"{kind}\" needs {name} to read the image directly "
                           f"({x.shape[1]} inputs), but it has {weight.shape[1]}; use inputs = \"layer\"")
    return (x - ctx.info.mean) / ctx.info.std if kind == "normalized" else x


def train(ctx: TrainContext) -> dict:
    from harness.errors import HarnessError
    from harness_hebbian import snapshots
    from harness_hebbian.rule import resolve_method, train_hebbian

    if len(ctx.params) != 1 or next(iter(ctx.params.values())).dim() != 2:
        raise HarnessError(f"hebbian trains exactly one 2-D weight matrix per stage; got "
                           f"{', '.join(ctx.params)}; set params = [\"fc1.weight\"]")
    (name, weight), = ctx.params.items()
    options = dict(ctx.options)
    if options["k"] > weight.shape[0]:
        raise HarnessError(f"hebbian: k = {options['k']} exceeds the {weight.shape[0]} units of {name}")
    inputs = _inputs(ctx, name, weight)
    stop = options.pop("stop_after", 0) or options["epochs"]
    step = resolve_method(options["method"], weight.device, options["ranking_dtype"])
    key = snapshots.schedule_key(options, step, ctx.seed, weight, inputs)
    options.pop("inputs")
    start = snapshots.latest(ctx.state_dir, key, stop)
    first = 0 if start is None else start["epoch"]
    advance = ctx.progress(stop - first, f"hebbian {name} ({step} step"
                                         + (f", from the epoch-{first} snapshot)" if first else ")"))

    def keep(state):
        snapshots.save(ctx.state_dir, key, state)

    # the full schedule's end, or a snapshot already there, needs no new snapshot
    on_stop = keep if first < stop < options["epochs"] else None
    try:
        history = train_hebbian(weight.data, inputs, seed=ctx.seed, on_epoch=lambda s: advance(**s), stop=stop,
                                start=start, on_stop=on_stop, on_state=snapshots.every(ctx.state_dir, key), **options)
    except ValueError as exc:  # an option this device cannot honour (method, ranking_dtype)
        raise HarnessError(f"hebbian: {exc}") from None
    stats = {"history": history}
    if stop < options["epochs"]:
        stats["stopped_at"] = stop
    if first:
        stats["continued_from"] = first  # a snapshot of the same schedule (harness_hebbian.snapshots)
    return stats


@hookimpl
def harness_register_learners(register):
    register(Learner(name="hebbian", train=train, defaults=DEFAULTS, optional=OPTIONAL, check=_check, presets=PRESETS,
                     description="Krotov-Hopfield competing hidden units (unsupervised, one layer)"))
