"""Built-in model ``repu``: 784 -> H -> 10 without biases, hidden activation ReLU(x)^n, output
beta * W2 h. The input normalisation lives inside the model so attacks work on [0, 1] images.
``unit_inputs = true`` also scales each input vector to unit length (Krotov & Hopfield's classifier).

With n = 4.5 and beta = 0.01 this is the Krotov & Hopfield (2019) / thesis network; n = 1 gives a
plain ReLU net of the same shape.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import DataInfo, Model

DEFAULTS = {"hidden": 2000, "power": 4.5, "beta": 0.01, "mean": None, "std": None, "unit_inputs": False}

PRESETS = {
    # Krotov & Hopfield (PNAS 2019): raw [0, 1] pixels, each image scaled to unit length when it enters
    # the network (the Hebbian rule itself learns from raw pixels: hebbian preset "krotov2019"). The
    # paper's text does not say so; its first author does (reply of 2021-02-28 in
    # issue 4 of his Biological_Learning repository: "normalize them first, so that each MNIST image is
    # a unit vector ... This should bring the accuracy up to 98.5% approximately").
    "krotov2019": {"hidden": 2000, "power": 4.5, "beta": 0.01, "mean": 0.0, "std": 1.0, "unit_inputs": True},
}


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
                   info.std if options["std"] is None else options["std"], options["unit_inputs"])


def metadata(module) -> dict[str, str]:
    return {"power": repr(module.power), "beta": repr(module.beta), "mean": repr(module.mean),
            "std": repr(module.std), "unit_inputs": repr(module.unit)}


@hookimpl
def harness_register_models(register):
    register(Model(name="repu", build=build, defaults=DEFAULTS, metadata=metadata, check=_check, presets=PRESETS,
                   description="784 -> hidden -> 10, no biases, ReLU(x)^power, output beta*W2*h"))
