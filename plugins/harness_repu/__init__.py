"""Built-in model ``repu``: 784 -> H -> 10 without biases, hidden activation ReLU(x)^n, output
beta * W2 h. The input normalisation lives inside the model so attacks work on [0, 1] images.

With n = 4.5 and beta = 0.01 this is the Krotov & Hopfield (2019) / thesis network; n = 1 gives a
plain ReLU net of the same shape.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import DataInfo, Model

DEFAULTS = {"hidden": 2000, "power": 4.5, "beta": 0.01, "mean": None, "std": None}


def _check(options: dict) -> None:
    if options["hidden"] < 1:
        raise ValueError("hidden: expected a positive number of hidden units")
    if options["power"] <= 0:
        raise ValueError("power: expected a positive exponent (1 = ReLU, 4.5 = the thesis)")
    for key in ("mean", "std"):
        value = options[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{key}: expected a number (default: the dataset's)")
    if options["std"] is not None and options["std"] <= 0:
        raise ValueError("std: expected a positive number")


def build(options: dict, info: DataInfo):
    import math

    from harness_repu.net import RePUNet

    return RePUNet(math.prod(info.input_shape), options["hidden"], info.num_classes, options["power"],
                   options["beta"], info.mean if options["mean"] is None else options["mean"],
                   info.std if options["std"] is None else options["std"])


def metadata(module) -> dict[str, str]:
    return {"power": repr(module.power), "beta": repr(module.beta), "mean": repr(module.mean),
            "std": repr(module.std)}


@hookimpl
def harness_register_models(register):
    register(Model(name="repu", build=build, defaults=DEFAULTS, metadata=metadata, check=_check,
                   description="784 -> hidden -> 10, no biases, ReLU(x)^power, output beta*W2*h"))
