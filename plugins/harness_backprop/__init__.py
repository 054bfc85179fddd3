"""Built-in learner ``backprop``: Adam on cross-entropy over the parameters the stage names.

Bio = [hebbian on fc1 (frozen), backprop on fc2]; BP = [backprop on everything].
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Learner, TrainContext

DEFAULTS = {"epochs": 10, "lr": 1e-3, "batch_size": 100, "weight_decay": 0.0}


def _check(options: dict) -> None:
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ValueError(f"{key}: expected a positive integer")
    if options["lr"] <= 0:
        raise ValueError("lr: expected a positive learning rate")
    if options["weight_decay"] < 0:
        raise ValueError("weight_decay: expected a number >= 0")


def train(ctx: TrainContext) -> dict:
    import torch
    import torch.nn.functional as F

    options = ctx.options
    model, x, y = ctx.model, ctx.x, ctx.y
    optimizer = torch.optim.Adam(ctx.params.values(), lr=options["lr"], weight_decay=options["weight_decay"])
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    advance = ctx.progress(options["epochs"], "backprop " + ",".join(ctx.params))
    history = []
    for epoch in range(options["epochs"]):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total_loss = correct = 0.0
        for start in range(0, len(x), options["batch_size"]):
            batch = order[start:start + options["batch_size"]]
            logits = model(x[batch])
            loss = F.cross_entropy(logits, y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch)
            correct += float((logits.argmax(1) == y[batch]).sum())
        stats = {"epoch": epoch + 1, "loss": total_loss / len(x), "train_acc": correct / len(x),
                 "test_acc": _accuracy(model, ctx.x_test, ctx.y_test)}
        if not torch.isfinite(torch.tensor(stats["loss"])):
            raise FloatingPointError(f"backprop: loss became {stats['loss']} in epoch {epoch + 1}; lower lr")
        history.append(stats)
        advance(**{k: v for k, v in stats.items() if k != "epoch"})
    model.eval()
    return {"history": history}


def _accuracy(model, x, y, batch_size: int = 1000) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
                      for s in range(0, len(x), batch_size))
    return correct / max(len(x), 1)


@hookimpl
def harness_register_learners(register):
    register(Learner(name="backprop", train=train, defaults=DEFAULTS, check=_check,
                     description="Adam + cross-entropy on the parameters the stage names"))
