"""What a trained net looks like near the data: the statistics robustness is set against.

Per model of a run, on the run's own test images (its ``test_subset`` or first ``test_size``):

- ``margin``: the median logit margin of the true class, z_y - max_{j != y} z_j (negative where the
  image is misclassified), in the model's raw logits;
- ``logit_scale``: the median of max_j |z_j|, the scale a softmax sees before any rescaling;
- ``boundary``: the median over correctly classified images of margin / ||grad_x margin||_1, the
  first-order (linearised) L-inf distance to the decision boundary, comparable with eps. It does not
  depend on the logit scale or on T;
- ``active``: the median share of hidden units with a non-zero output (the code ``layer``'s input),
  for codes such as RePU's, whose sparsity one explanation of robustness appeals to;
- per logit view T (logits / T, what the attacks' cross-entropy sees, in float32 as they run):
  ``zero_grad`` the share of images whose input gradient is exactly zero, ``grad_l1`` the median
  L1 norm of that gradient (the first-order change of the loss per unit of L-inf perturbation).

The margin's gradient is taken in float64 on a copy of the model, so float32 saturation does not
enter the geometry; the per-T gradients are float32 on purpose, since that is what masks attacks.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError

COLUMNS = ("model", "seed", "model_hash", "hebbian_epochs", "images", "clean", "margin", "logit_scale", "boundary",
           "active", "T", "zero_grad", "grad_l1")


@dataclass(frozen=True)
class Geometry:
    images: int
    clean: float
    margin: float
    logit_scale: float
    boundary: float
    active: float | None
    views: dict[float, tuple[float, float]]   # T -> (zero-gradient share, median gradient L1 norm)


def _median(values):
    return float(values.median()) if len(values) else float("nan")


def code_share(module, x, layer: str, batch_size: int = 500) -> float | None:
    """Median share of non-zero entries in what submodule ``layer`` receives; None without one."""
    from harness.kit.layers import module_inputs

    if layer not in dict(module.named_modules()):
        return None
    code = module_inputs(module, layer, x, batch_size).flatten(1)
    return _median((code != 0).double().mean(1))


def geometry(module, x, y, temperatures=(1.0,), layer: str = "fc2", batch_size: int = 500) -> Geometry:
    """The statistics above for ``module`` on images ``x`` with labels ``y``."""
    import torch
    import torch.nn.functional as F

    twin = copy.deepcopy(module).double().eval()
    margins, scales, boundaries, correct = [], [], [], []
    views = {float(T): ([], []) for T in temperatures}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        with torch.no_grad():
            logits = module(xb)
        scales.append(logits.abs().amax(1).double())
        correct.append(logits.argmax(1) == yb)
        xd = xb.double().requires_grad_(True)
        z = twin(xd)
        other = z.masked_fill(F.one_hot(yb, z.shape[1]).bool(), float("-inf")).amax(1)
        margin = z.gather(1, yb[:, None])[:, 0] - other
        grad, = torch.autograd.grad(margin.sum(), xd)
        margins.append(margin.detach())
        boundaries.append(margin.detach() / grad.flatten(1).abs().sum(1).clamp_min(1e-300))
        for T, (zeros, norms) in views.items():
            xf = xb.detach().clone().requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(module(xf) / T, yb, reduction="sum"), xf)
            flat = g.flatten(1)
            zeros.append((flat == 0).all(1))
            norms.append(flat.abs().sum(1).double())
    correct_all = torch.cat(correct)
    return Geometry(
        images=len(x), clean=float(correct_all.double().mean()), margin=_median(torch.cat(margins)),
        logit_scale=_median(torch.cat(scales)), boundary=_median(torch.cat(boundaries)[correct_all]),
        active=code_share(module, x, layer, batch_size),
        views={T: (float(torch.cat(z).double().mean()), _median(torch.cat(n))) for T, (z, n) in views.items()})


def run_images(run_dir: Path, registry, root: Path, device="cpu"):
    """(dataset name, x, y): the test images the run's cells were evaluated on."""
    from harness.suite.load import load_suite

    suite = load_suite(run_dir / "suite.toml", registry)
    if len(suite.datasets) != 1:
        raise HarnessError(f"{run_dir / 'suite.toml'}: geometry reads runs of one dataset; this one has "
                           f"{', '.join(suite.datasets)}")
    name, = suite.datasets
    source = registry.datasets.get(name)
    source.fetch(root)
    x, y = suite.test_images(*source.load(root, False), name)
    return name, x.to(device), y.to(device)


def _weights(sidecar_path: Path, cache_root: Path | None) -> Path:
    """The model's weights: next to its sidecar in the run, else in the model cache (committed runs keep
    sidecars only)."""
    here = sidecar_path.with_suffix(".safetensors")
    if here.is_file():
        return here
    model_hash = json.loads(sidecar_path.read_text()).get("model_hash", "")
    cached = cache_root / f"{model_hash}.safetensors" if cache_root else None
    if cached is not None and cached.is_file():
        return cached
    raise HarnessError(f"{here}: no weights here nor in the model cache ({cache_root}); rerun the run's suite "
                       f"with --out {sidecar_path.parent.parent} to train them again")


def hebbian_epochs(sidecar: dict) -> int | None:
    """Epochs of the model's Hebbian stage (its checkpoint when it stopped early), if it has one."""
    for stage in sidecar.get("stages") or []:
        if stage.get("learner") == "hebbian":
            stats = stage.get("stats") or {}
            return int(stats.get("stopped_at") or len(stats.get("history") or []) or stage["options"]["epochs"])
    return None


def run_geometry(run_dir: Path, root: Path, temperatures, cache_root: Path | None, device="cpu",
                 layer: str = "fc2", progress=lambda message: None):
    """One row per model of the run and logit view T (:data:`COLUMNS`), as a pandas DataFrame."""
    import pandas as pd

    from harness.run.modelstore import load_model
    from harness.plugins import load_registry

    registry = load_registry()
    sidecars = sorted((run_dir / "models").glob("*.json"))
    if not sidecars:
        raise HarnessError(f"{run_dir / 'models'}: no trained models (is {run_dir} a run directory?)")
    _, x, y = run_images(run_dir, registry, root, device)
    rows = []
    for path in sidecars:
        sidecar = json.loads(path.read_text())
        weights = _weights(path, cache_root)
        if weights.parent != path.parent:  # load_model reads the pair by name: use the cache's sidecar
            path = weights
        module, _ = load_model(path, registry, device)
        progress(f"geometry of {sidecar['model_key']} (seed {sidecar['config']['seed']}) on {len(x)} images")
        found = geometry(module, x, y, temperatures, layer)
        model = {"model": sidecar["model_key"], "seed": sidecar["config"]["seed"],
                 "model_hash": sidecar["model_hash"], "hebbian_epochs": hebbian_epochs(sidecar)}
        shared = {k: v for k, v in asdict(found).items() if k != "views"}
        rows += [{**model, **shared, "T": T, "zero_grad": zero, "grad_l1": norm}
                 for T, (zero, norm) in found.views.items()]
    return pd.DataFrame(rows, columns=list(COLUMNS))
