"""Loading an ``external`` model: importing its factory, reading safetensors weights, TorchScript,
or a harness-saved model. Every failure is one :class:`HarnessError` line naming the file or
factory and the fix."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import struct
import sys
import warnings
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.kit.modelcheck import check_output
from harness.registry import did_you_mean

SHOWN = 4  # names listed when weights do not match the model


# -- identity ------------------------------------------------------------------------------------

def files(options: dict) -> list[tuple[str, Path]]:
    """(option, path) of every file the model is read from: for a factory, its weights and the
    factory's own source file (not the files that one imports)."""
    if options["factory"]:
        weights = [("weights", Path(options["weights"]).expanduser())]
        source = factory_source(options["factory"])
        return weights + ([("factory", source)] if source is not None else [])
    if options["torchscript"]:
        return [("torchscript", Path(options["torchscript"]).expanduser())]
    saved = Path(options["saved"]).expanduser()
    return [("saved", saved), ("saved", saved.with_suffix(".json"))]


def content_hash(options: dict) -> str:
    """sha256 of the files the model is read from; ValueError("option: problem") when one is
    missing or, for weights, not a safetensors file."""
    digest = hashlib.sha256()
    for key, path in files(options):
        if not path.is_file():
            hint = ("; a harness-saved model is a NAME.safetensors next to its NAME.json" if key == "saved"
                    else "")
            raise ValueError(f"{key}: file not found: {path}{hint}")
        if key == "weights" or (key == "saved" and path.suffix == ".safetensors"):
            _require_safetensors(path, key)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def factory_source(text: str) -> Path | None:
    """The file that defines ``path/to/file.py:function`` or ``package.module:function``, found without
    running the module; None when a module name leads to no source file (then building the model
    names the problem)."""
    location = text.rpartition(":")[0]
    if _is_path(location):
        return Path(location).expanduser()
    try:
        spec = importlib.util.find_spec(location)
    except Exception:  # noqa: BLE001 - a parent package that fails to import: building says how
        return None
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    return origin if origin is not None and origin.is_file() else None


def _is_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _require_safetensors(path: Path, key: str) -> None:
    """The safetensors layout: an 8-byte little-endian header length, then a JSON header."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    size = path.stat().st_size
    if len(head) < 9 or struct.unpack("<Q", head[:8])[0] + 8 > size or head[8:9] != b"{":
        raise ValueError(f"{key}: {path} is not a safetensors file; only safetensors weights are read (never "
                         f"pickle): save the state dict with safetensors.torch.save_file(model.state_dict(), "
                         f"'{path.with_suffix('.safetensors').name}')")


# -- building ------------------------------------------------------------------------------------

def build_model(options: dict, info) -> Any:
    """The module, in eval mode with frozen parameters, checked to map [N, *input_shape] images to
    [N, classes] logits."""
    if options["factory"]:
        module, what = _from_factory(options), f"model from factory {options['factory']}"
    elif options["torchscript"]:
        module, what = _from_torchscript(Path(options["torchscript"]).expanduser()), f"TorchScript {options['torchscript']}"
    else:
        module, what = _from_saved(Path(options["saved"]).expanduser()), f"saved model {options['saved']}"
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    check_output(module, info, what)
    return module


def _from_factory(options: dict):
    import torch

    text = options["factory"]
    function = load_factory(text)
    try:
        module = function(**options["kwargs"])
    except Exception as exc:  # noqa: BLE001 - user code: one line
        raise HarnessError(f"factory {text}: calling it with {options['kwargs'] or 'no arguments'} failed "
                           f"({type(exc).__name__}: {_first_line(exc)}); pass its arguments with kwargs "
                           f"(harness eval: --arg KEY=VALUE)") from None
    if not isinstance(module, torch.nn.Module):
        raise HarnessError(f"factory {text}: returned {type(module).__name__}, expected a torch.nn.Module")
    load_weights(module, Path(options["weights"]).expanduser(), text)
    return module


def load_factory(text: str):
    """The callable ``package.module:function`` or ``path/to/file.py:function`` names."""
    location, _, name = text.rpartition(":")
    if _is_path(location):
        module = _module_from_file(Path(location).expanduser(), text)
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            if exc.name and (location == exc.name or location.startswith(exc.name + ".")):
                raise HarnessError(f"factory {text}: no module named '{exc.name}' on the Python path; run harness "
                                   f"where it is importable (PYTHONPATH=DIR, or pip install your package), or "
                                   f"name its file: path/to/{location.rsplit('.', 1)[-1]}.py:{name}") from None
            raise HarnessError(f"factory {text}: importing '{location}' failed: it needs '{exc.name}', which is "
                               f"not installed here; install it") from None
        except Exception as exc:  # noqa: BLE001 - user code: one line
            raise HarnessError(f"factory {text}: importing '{location}' failed ({type(exc).__name__}: "
                               f"{_first_line(exc)})") from None
    function = getattr(module, name, None)
    if function is None:
        names = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        raise HarnessError(f"factory {text}: '{location}' has no '{name}'{did_you_mean(name, names)}")
    if not callable(function):
        raise HarnessError(f"factory {text}: '{name}' is a {type(function).__name__}, not a function")
    return function


def _module_from_file(path: Path, text: str):
    if not path.is_file():
        raise HarnessError(f"factory {text}: file not found: {path}")
    # one module per file, named after its absolute path, so two files called model.py do not clash
    resolved = path.resolve()
    name = f"harness_external_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}_" \
           f"{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise HarnessError(f"factory {text}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code: one line
        del sys.modules[name]
        raise HarnessError(f"factory {text}: importing {path} failed ({type(exc).__name__}: "
                           f"{_first_line(exc)})") from None
    return module


def load_weights(module, path: Path, factory: str) -> None:
    """Load a safetensors state dict into ``module``: every name and shape must match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise HarnessError(f"weights {path}: cannot read the safetensors file ({_first_line(exc)})") from None
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} is {_shape(tensors[k].shape)} in the file, {_shape(v.shape)} in the model"
              for k, v in expected.items() if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    problems = ([f"missing {_some(missing)}"] if missing else []) + \
               ([f"unexpected {_some(unexpected)}"] if unexpected else []) + shapes[:SHOWN]
    if problems:
        raise HarnessError(f"weights {path} do not match the model factory {factory} builds: "
                           f"{'; '.join(problems)}; save model.state_dict() of that same model (and pass the "
                           f"factory's arguments with kwargs / --arg)")
    module.load_state_dict(tensors, strict=True)


def _from_torchscript(path: Path):
    import torch

    if not path.is_file():
        raise HarnessError(f"torchscript {path}: file not found")
    try:
        with warnings.catch_warnings():  # recent torch deprecates TorchScript in favour of torch.export
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, ValueError, ...
        raise HarnessError(f"torchscript {path}: not a TorchScript file ({_first_line(exc)[:160]}); save one with "
                           f"torch.jit.save(torch.jit.script(model), FILE), or pass a factory with safetensors "
                           f"weights") from None


def _from_saved(path: Path):
    from harness.run.modelstore import load_model
    from harness.plugins import load_registry

    try:
        sidecar = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"saved {path}: its sidecar {path.with_suffix('.json')} is unreadable ({exc})") from None
    if not isinstance(sidecar, dict) or "model" not in sidecar or "options" not in sidecar:
        raise HarnessError(f"saved {path}: {path.with_suffix('.json')} is not a harness model sidecar; for your "
                           f"own weights use a factory: harness eval package.module:build --weights {path}")
    return load_model(path, load_registry())[0]


def _shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
