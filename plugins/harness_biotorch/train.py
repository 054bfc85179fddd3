"""One stage of BioTorch training: convert a copy of the model, train it with BioTorch's loop, write the
learned weights into the plain model. Imported only when such a stage runs."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings

import torch
import torch.nn.functional as F

from harness.api import TrainContext
from harness.errors import HarnessError
from harness.kit.measures import accuracy
from harness_biotorch import INSTALL


def bio_module_class(mode: str):
    """BioTorch's ``BioModule``, or a one-line error naming the install command."""
    try:
        from biotorch.module.biomodule import BioModule
    except ImportError as exc:
        raise HarnessError(f"learner '{mode}' needs BioTorch, which cannot be imported here ({exc}); "
                           f"install the extra: {INSTALL}") from None
    return BioModule


def convert(model, mode: str, seed: int, output_dim: int, init: str = "xavier", gradient_clip: bool = False):
    """A BioTorch-converted copy of ``model`` (``model`` itself is untouched): its layers keep the model's
    forward weights, and their feedback weights are drawn from torch's global generator seeded with ``seed``
    (the caller forks the generator). BioTorch prints a summary of the conversion; it is swallowed."""
    BioModule = bio_module_class(mode)
    twin = copy.deepcopy(model)
    torch.manual_seed(seed)
    config = {"type": mode, "options": {"constrain_weights": False, "gradient_clip": gradient_clip, "init": init}}
    with contextlib.redirect_stdout(io.StringIO()):
        bio = BioModule(twin, mode=mode, copy_weights=True, layer_config=config, output_dim=output_dim)
    # BioTorch creates the feedback weights on the CPU whatever device the copied weights are on.
    return bio.to(next(model.parameters()).device)


def converted_layers(bio) -> list[str]:
    """Names (inside ``bio.module``) of the layers BioTorch replaced: they hold feedback weights."""
    return [name for name, layer in bio.module.named_modules() if hasattr(layer, "weight_backward")]


def make_optimizer(params, options: dict):
    if options["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=options["lr"], momentum=options["momentum"],
                               weight_decay=options["weight_decay"])
    return torch.optim.Adam(params, lr=options["lr"], weight_decay=options["weight_decay"])


def bio_step(bio, mode: str, x, y, optimizer):
    """One step of BioTorch's training loop (biotorch.training.functions.train): DFA's forward takes the
    targets and the loss, so its layers see the output error; then backward through BioTorch's layers."""
    with warnings.catch_warnings():
        # BioTorch 0.0.16's DFA layers use torch's deprecated module backward hook, and torch warns on
        # every forward pass. That hook is how BioTorch trains (tests/plugins/biotorch/test_biotorch.py compares the
        # learner with BioTorch's own loop), so the warning says nothing to a harness user.
        warnings.filterwarnings("ignore", message="Using a non-full backward hook", category=FutureWarning)
        logits = bio(x, y, F.cross_entropy) if mode == "dfa" else bio(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    optimizer.step()
    return logits.detach(), loss.detach()


def train_converted(ctx: TrainContext, mode: str) -> dict:
    options = ctx.options
    names = set(ctx.params)
    output_dim = ctx.info.num_classes if ctx.info is not None else None
    if output_dim is None:
        with torch.no_grad():
            output_dim = ctx.model(ctx.x[:1]).shape[1]
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        bio = convert(ctx.model, mode, ctx.seed, output_dim, options["init"], options["gradient_clip"])
        layers = converted_layers(bio)
        owners = {name.rsplit(".", 1)[0] for name in names}
        if not owners & set(layers):
            raise HarnessError(f"learner '{mode}': none of the stage's parameters ({', '.join(sorted(names))}) "
                               f"is in a layer BioTorch converts (nn.Linear, nn.Conv2d); converted: "
                               f"{', '.join(layers) or 'none'}")
        trained = {}
        for name, param in bio.module.named_parameters():
            param.requires_grad_(name in names)
            if name in names:
                trained[name] = param
        optimizer = make_optimizer(list(trained.values()), options)
        generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
        advance = ctx.progress(options["epochs"], f"{mode} (BioTorch) " + ",".join(ctx.params))
        history = []
        x, y = ctx.x, ctx.y
        for epoch in range(options["epochs"]):
            bio.train()
            order = torch.randperm(len(x), generator=generator).to(x.device)
            total_loss = torch.zeros((), device=x.device)
            correct = torch.zeros((), device=x.device)
            for start in range(0, len(x), options["batch_size"]):
                batch = order[start:start + options["batch_size"]]
                logits, loss = bio_step(bio, mode, x[batch], y[batch], optimizer)
                total_loss += loss * len(batch)
                correct += (logits.argmax(1) == y[batch]).sum()
            bio.eval()
            mean_loss = float(total_loss) / len(x)
            if not torch.isfinite(torch.tensor(mean_loss)):
                raise FloatingPointError(f"{mode}: the loss became {mean_loss}; lower lr")
            with torch.no_grad():  # the plain model gets the learned weights: what is stored and attacked
                for name, param in trained.items():
                    ctx.params[name].copy_(param)
            stats = {"epoch": epoch + 1, "loss": mean_loss, "train_acc": float(correct) / len(x),
                     "test_acc": accuracy(ctx.model, ctx.x_test, ctx.y_test)}
            history.append(stats)
            advance(**{k: v for k, v in stats.items() if k != "epoch"})
    ctx.model.eval()
    return {"history": history, "converted_layers": layers}
