"""Trained models on disk: ``NAME.safetensors`` (tensors + string metadata) and ``NAME.json`` (how
it was made). Only safetensors and JSON are ever read back: no pickle, no ``torch.load``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.api import DataInfo, Model
from harness.errors import HarnessError
from harness.kit.atomic import replace_atomically
from harness.registry import Registry


def save_model(module, spec: Model, path: Path, sidecar: dict[str, Any]) -> None:
    """Write the weights (with the model's own metadata) and the JSON sidecar, each atomically.
    The sidecar is written last, so its presence means the pair is complete."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    metadata = {"harness_model": spec.name, **(spec.metadata(module) if spec.metadata else {})}
    replace_atomically(path.with_suffix(".safetensors"), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    text = json.dumps(sidecar, indent=2, sort_keys=True, default=str)
    replace_atomically(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))


def read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise HarnessError(f"{sidecar}: missing; a model file needs its JSON sidecar") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{sidecar}: unreadable model sidecar ({exc})") from None


def load_model(path: Path, registry: Registry, device="cpu"):
    """Rebuild a saved model through its plugin and load its weights. Returns (module, sidecar)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sidecar = read_sidecar(path)
    spec = registry.models.get(sidecar["model"])
    info = DataInfo(**{**sidecar["info"], "input_shape": tuple(sidecar["info"]["input_shape"])})
    module = spec.build(sidecar["options"], info)
    weights = path.with_suffix(".safetensors")
    try:
        module.load_state_dict(load_file(str(weights)), strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise HarnessError(f"{weights}: cannot load weights ({str(exc).splitlines()[0]}); "
                           f"delete it and its .json to retrain") from None
    return module.to(device).eval(), sidecar
