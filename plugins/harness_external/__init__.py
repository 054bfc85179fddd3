"""Built-in model ``external``: a network trained outside the harness, put on a suite's grid.

Exactly one source, with paths relative to the directory ``harness`` runs in:

* ``factory = "package.module:build"`` (or ``"path/to/file.py:build"``) with ``weights =
  "FILE.safetensors"``: ``build(**kwargs)`` returns the ``nn.Module``, whose state dict is read from
  the safetensors file (never pickle) and must match it name for name and shape for shape;
* ``torchscript = "FILE.pt"``: a module saved with ``torch.jit.save``;
* ``saved = "NAME.safetensors"``: a model the harness wrote (``OUT/models``, with its ``NAME.json``),
  rebuilt through the model plugin named in it.

The model must take [N, *input_shape] images in [0, 1] (normalisation inside the model) and return
[N, classes] logits; the suite loader checks all this when it builds the model, with one line per
problem. The model is ``pretrained``: a suite gives it no learner stages (stages may still fine-tune
it), and the sha256 of the files it reads is part of its hash: the weights (or the TorchScript or
saved file) and a factory's own source file, so changed weights or a changed factory are a new model
(a change only in a module the factory imports is not seen).
``harness eval`` writes such a suite for you (harness/own_model.py), through this record's
``loader``, which turns ``harness eval MODEL [--weights FILE] [--arg K=V]`` into these options.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Model

DEFAULTS = {"factory": "", "weights": "", "kwargs": {}, "torchscript": "", "saved": ""}
SOURCES = ("factory", "torchscript", "saved")


def _check(options: dict) -> None:
    """The options that are given must fit together; that one source is given at all is checked by
    ``_fingerprint`` (so the defaults alone pass, like every record's)."""
    given = [key for key in SOURCES if options[key]]
    if len(given) > 1:
        raise ValueError(f"{given[1]}: set exactly one of factory (with weights), torchscript or saved, "
                         f"not {' and '.join(given)}")
    if options["factory"]:
        module, sep, name = options["factory"].rpartition(":")
        if not sep or not module or not name.isidentifier():
            raise ValueError(f"factory: expected 'package.module:function' or 'path/to/file.py:function', "
                             f"got {options['factory']!r}")
        if not options["weights"]:
            raise ValueError("weights: a factory needs weights = \"FILE.safetensors\", its state dict saved "
                             "with safetensors.torch.save_file(model.state_dict(), FILE)")
    else:
        for key in ("weights", "kwargs"):
            if options[key]:
                raise ValueError(f"{key}: only used with factory")


def _fingerprint(options: dict) -> str:
    from harness_external.load import content_hash

    if not any(options[key] for key in SOURCES):
        raise ValueError("factory: missing; set factory = \"package.module:build\" with weights = "
                         "\"FILE.safetensors\", or torchscript = \"FILE\", or saved = \"NAME.safetensors\"")

    return content_hash(options)


def named(model: str, weights: str | None, kwargs: dict) -> tuple[str, dict]:
    """(a name for the model, its options) for MODEL as ``harness eval`` takes it: a harness-saved
    ``NAME.safetensors`` (with ``NAME.json``), a factory ``package.module:build`` or
    ``file.py:build`` with ``weights``, or a TorchScript file. Paths become absolute."""
    from pathlib import Path

    from harness.errors import HarnessError

    path = Path(model).expanduser()
    if ":" in model and not path.exists():  # a factory
        location, _, function = model.rpartition(":")
        if not weights:
            raise HarnessError(f"{model}: a factory needs its weights: add --weights FILE.safetensors (the "
                               f"state dict saved with safetensors.torch.save_file(model.state_dict(), FILE))")
        if location.endswith(".py") or "/" in location:
            location = str(Path(location).expanduser().absolute())
        name = Path(location).stem if location.endswith(".py") else location.rsplit(".", 1)[-1]
        options = {"factory": f"{location}:{function}", "weights": str(Path(weights).expanduser().absolute())}
        return name, {**options, "kwargs": dict(kwargs)} if kwargs else options
    if weights or kwargs:
        raise HarnessError(f"{model}: --weights and --arg go with a factory (package.module:build); a model file "
                           f"holds its weights")
    if not path.is_file():
        raise HarnessError(f"{model}: no such file, and not a factory 'package.module:function'; pass a model "
                           f"file the harness saved (NAME.safetensors), a TorchScript file, or a factory with "
                           f"--weights FILE.safetensors")
    if path.suffix == ".safetensors":
        if not path.with_suffix(".json").is_file():
            raise HarnessError(f"{model}: no {path.with_suffix('.json').name} next to it, so it is not a model the "
                               f"harness saved; for your own state dict pass the factory that builds the network: "
                               f"harness eval package.module:build --weights {model}")
        return path.stem, {"saved": str(path.absolute())}
    return path.stem, {"torchscript": str(path.absolute())}


def build(options: dict, info):
    from harness_external.load import build_model

    return build_model(options, info)


@hookimpl
def harness_register_models(register):
    register(Model(name="external", build=build, defaults=DEFAULTS, check=_check, pretrained=True,
                   fingerprint=_fingerprint, loader=named,
                   description="a model trained elsewhere: factory + safetensors weights, TorchScript, or a "
                               "harness-saved model (no learner stages)"))
