"""Built-in learner ``backprop``: Adam over the parameters the stage names.

Bio = [hebbian on fc1 (frozen), backprop on fc2]; BP = [backprop on everything].

When every trained parameter sits after a frozen part of the network and the model can resume its
forward pass there (``resume_points`` + ``forward_from``, see harness/api.py), the frozen part's output
is computed once and the head is trained on that cache: for the Bio net this removes the
784 x 2000 layer from every epoch. Falls back to the full forward pass when the cache would not fit
``cache_limit_gb``.

``optimizer_reset = "epoch"`` creates a fresh Adam at the start of every epoch, as the thesis's
``train_routine`` does (``optimizer = optim.Adam(...)`` inside its epoch loop, appendix A): Adam's
moment estimates and bias correction restart each epoch. ``"never"`` keeps one Adam for the stage.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Learner, TrainContext
from harness.kit.checks import one_of
from harness.kit.measures import accuracy
from harness.kit.optim import adam

DEFAULTS = {"epochs": 10, "lr": 1e-3, "batch_size": 100, "weight_decay": 0.0, "schedule": [],
            "loss": "cross-entropy", "m": 6.0, "cache_features": True, "cache_limit_gb": 4.0,
            "optimizer_reset": "never"}

PRESETS = {
    # The thesis's schedule: Adam, minibatch 100, 300 epochs in five phases of decreasing rate, a new
    # Adam every epoch (train_routine, appendix A).
    "thesis": {"schedule": [[1e-3, 100], [5e-4, 50], [1e-4, 50], [5e-5, 50], [1e-5, 50]], "batch_size": 100,
               "optimizer_reset": "epoch"},
    # Krotov & Hopfield's supervised head: tanh outputs, |c - t|^m loss with m = 6, targets +-1.
    "krotov2019": {"loss": "krotov", "m": 6.0},
}
LOSSES = ("cross-entropy", "krotov")
RESETS = ("never", "epoch")


def _check(options: dict) -> None:
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")
    if options["lr"] <= 0:
        raise ValueError("lr: expected a positive learning rate")
    if options["weight_decay"] < 0:
        raise ValueError("weight_decay: expected a number >= 0")
    one_of(options, "loss", LOSSES)
    one_of(options, "optimizer_reset", RESETS)
    if options["m"] < 1:
        raise ValueError("m: expected a number >= 1 (power of Krotov's loss)")
    for phase in options["schedule"]:
        if (not isinstance(phase, list) or len(phase) != 2 or isinstance(phase[0], bool)
                or not isinstance(phase[0], (int, float)) or phase[0] <= 0
                or not isinstance(phase[1], int) or isinstance(phase[1], bool) or phase[1] < 1):
            raise ValueError("schedule: expected a list of [learning rate, epochs] pairs, e.g. [[1e-3, 100], [5e-4, 50]]")


def phases(options: dict) -> list[tuple[float, int]]:
    """(learning rate, epochs) pairs: the schedule when given, else one phase of lr for epochs."""
    return [(float(lr), int(n)) for lr, n in options["schedule"]] or [(options["lr"], options["epochs"])]


def loss_fn(options: dict):
    import torch
    import torch.nn.functional as F

    if options["loss"] == "cross-entropy":
        return F.cross_entropy
    m = options["m"]

    def krotov(logits, y):
        target = torch.full_like(logits, -1.0).scatter_(1, y[:, None], 1.0)
        return (logits.tanh() - target).abs().pow(m).sum(1).mean()
    return krotov


def train(ctx: TrainContext) -> dict:
    import torch

    from harness.kit.resume import Resumable, training_key

    options = ctx.options
    forward, inputs, cached = _forward(ctx)
    x, y = inputs, ctx.y
    loss_of = loss_fn(options)

    def new_optimizer(lr):
        return adam(ctx.params.values(), lr=lr, weight_decay=options["weight_decay"])

    rates = [lr for lr, epochs in phases(options) for _ in range(epochs)]
    optimizer = new_optimizer(rates[0])
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    # A stopped training continues from its latest saved epoch (harness.kit.resume), bit-identical to one run.
    key = ("" if ctx.state_dir is None  # no cache, no saves: skip hashing the data
           else training_key("backprop", options, ctx.seed, ctx.model, {"x": ctx.x, "y": ctx.y}))
    resumable = Resumable(ctx.state_dir, key)
    history = []
    saved = resumable.load()
    if saved is not None:
        history = _restore(saved, ctx.params, optimizer, generator)
    advance = ctx.progress(len(rates) - len(history), "backprop " + ",".join(ctx.params)
                           + (f" (from epoch {len(history)})" if history else ""))
    for epoch in range(len(history), len(rates)):
        lr = rates[epoch]
        if options["optimizer_reset"] == "epoch":
            optimizer = new_optimizer(lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        stats = _epoch(ctx, forward, x, y, loss_of, optimizer, generator, options["batch_size"])
        stats = {"epoch": epoch + 1, "lr": lr, **stats}
        history.append(stats)
        advance(**{k: v for k, v in stats.items() if k not in ("epoch", "lr")})
        if epoch + 1 < len(rates):
            resumable.maybe_save(lambda: _state(ctx.params, optimizer, generator, history))
    resumable.finish()
    ctx.model.eval()
    return {"history": history, "cached_features": cached}


def _state(params, optimizer, generator, history) -> dict:
    """Everything the next epoch reads: the trained parameters, the optimizer's state, the generator's."""
    return {"params": {name: p.detach().cpu().clone() for name, p in params.items()},
            "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "history": list(history)}


def _restore(state: dict, params, optimizer, generator) -> list[dict]:
    import torch

    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state["params"][name])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return list(state["history"])


def _epoch(ctx, forward, x, y, loss_of, optimizer, generator, batch_size) -> dict:
    import torch

    ctx.model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    # Sums stay on the device: reading them every minibatch would stall a GPU once per step.
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), batch_size):
        batch = order[start:start + batch_size]
        logits = forward(x[batch])
        loss = loss_of(logits, y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(batch)
        correct += (logits.detach().argmax(1) == y[batch]).sum()
    mean_loss = float(total_loss) / len(x)
    correct = float(correct)
    if not torch.isfinite(torch.tensor(mean_loss)):
        raise FloatingPointError(f"backprop: the loss became {mean_loss}; lower lr")
    return {"loss": mean_loss, "train_acc": correct / len(x), "test_acc": accuracy(ctx.model, ctx.x_test, ctx.y_test)}


def _forward(ctx: TrainContext):
    """The function to train through and its inputs: the whole model on images, or, when the layers
    before the first trained one are frozen, ``forward_from`` on their cached output."""
    model = ctx.model
    start = _resume_point(model, ctx.params) if ctx.options["cache_features"] else None
    if start is not None:
        from harness.kit.layers import module_inputs

        width = model.get_submodule(start).weight.shape[1] if hasattr(model.get_submodule(start), "weight") else None
        size_gb = len(ctx.x) * (width or 0) * ctx.x.element_size() / 2**30
        if width and size_gb <= ctx.options["cache_limit_gb"]:
            features = module_inputs(model, start, ctx.x)
            return (lambda h: model.forward_from(start, h)), features, True
    return model, ctx.x, False


def _resume_point(model, params) -> str | None:
    """The last resume point at or before every trained parameter, if it is not the first one."""
    points = list(getattr(model, "resume_points", ()))
    if not points or not hasattr(model, "forward_from"):
        return None
    owners = {name.rsplit(".", 1)[0] for name in params}
    if not owners <= set(points):
        return None
    first = min(points.index(owner) for owner in owners)
    return points[first] if first > 0 else None


@hookimpl
def harness_register_learners(register):
    register(Learner(name="backprop", train=train, defaults=DEFAULTS, check=_check, presets=PRESETS,
                     description="Adam on cross-entropy (or Krotov's power loss) over the stage's parameters"))
