"""Evaluate a model trained anywhere, in one call: ``harness eval MODEL`` and :func:`eval_model`.

Nothing here evaluates: both write an ordinary suite in memory (the model as an ``external`` model,
or an in-memory module as a temporary plugin; an attack set; one temperature-rescaling defense per
T; every attack also at the large budget eps = 0.5 the masking checks read) and hand it to the
normal :class:`harness.runner.Runner`. The run directory is therefore a normal one:
``results.csv`` with the checks and worst-case rows, ``run.json``, and ``suite.toml`` holding the
generated suite, so ``harness run OUT/suite.toml --out OUT`` continues it and ``harness report``,
``leaderboard`` and ``compare`` read it.

The core names no attack or defense: an attack belongs to the set ``standard`` or ``fast`` by
declaring a preset of that name (the built-in sets, docs/attacks.md, are declared by the
torchattacks and noise plugins), and the T axis uses the registered rescaler that declares a
``temperature_option``. ``--attacks NAME,...`` picks attacks by name, each with its ``standard``
(else ``fast``) preset when it has one.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.registry import Registry, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SETS = ("standard", "fast")  # an attack joins a set by declaring a preset of that name
LARGE_EPS = 0.5        # harness.diagnostics.LARGE_EPS["linf"]: the large-budget check's eps
CONVERGENCE_IMAGES = 100  # the twice-the-iterations re-run of each attack, on at most this many images
EVAL_DIR = "runs"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(text: str) -> str:
    """A suite key made of letters, digits, '_' and '-'."""
    return _UNSAFE.sub("-", text).strip("-_")[:100] or "model"  # the run directory's safe-name limit


# -- the model -----------------------------------------------------------------------------------

def model_table(model: str, weights: str | None = None, kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """(key, [models.KEY] table) for MODEL as ``harness eval`` takes it: a harness-saved
    ``NAME.safetensors`` (with ``NAME.json``), a factory ``package.module:build`` or
    ``file.py:build`` with ``weights``, or a TorchScript file. Paths become absolute."""
    path = Path(model).expanduser()
    is_factory = ":" in model and not path.exists()
    if is_factory:
        location, _, function = model.rpartition(":")
        if not weights:
            raise HarnessError(f"{model}: a factory needs its weights: add --weights FILE.safetensors (the "
                               f"state dict saved with safetensors.torch.save_file(model.state_dict(), FILE))")
        if location.endswith(".py") or "/" in location:
            location = str(Path(location).expanduser().absolute())
        key = safe_key(Path(location).stem if location.endswith(".py") else location.rsplit(".", 1)[-1])
        table = {"model": "external", "factory": f"{location}:{function}",
                 "weights": str(Path(weights).expanduser().absolute())}
        if kwargs:
            table["kwargs"] = dict(kwargs)
        return key, table
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
        return safe_key(path.stem), {"model": "external", "saved": str(path.absolute())}
    return safe_key(path.stem), {"model": "external", "torchscript": str(path.absolute())}


# -- the suite -----------------------------------------------------------------------------------

def set_members(registry: Registry, name: str) -> dict[str, dict[str, Any]]:
    """[attacks] tables of the attacks whose records declare a preset ``name``, run with it; keyed
    by attack name (``name-backend`` where two backends declare the same attack)."""
    members = [e.obj for e in registry.entries("attacks") if name in e.obj.presets]
    counts: dict[str, int] = {}
    for spec in members:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    return {spec.name if counts[spec.name] == 1 else safe_key(f"{spec.name}-{spec.backend}"):
            {"attack": spec.name, "backend": spec.backend, "preset": name} for spec in members}


def attack_tables(attacks: str | Sequence[str], registry: Registry, num_classes: int) -> dict[str, dict]:
    """[attacks] tables: a set name (``standard``, ``fast``) or attack names (``name@backend``
    where several backends have it), comma-separated. A named attack runs with its ``standard``
    preset when it has one, else ``fast``'s, else the plugin's defaults."""
    names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
    if not names:
        raise HarnessError("--attacks: expected standard, fast or attack names separated by commas")
    tables: dict[str, dict] = {}
    for name in names:
        if name in SETS:
            members = set_members(registry, name)
            if not members:
                raise HarnessError(f"--attacks {name}: no registered attack declares a '{name}' preset; "
                                   f"is the plugin that provides them blocked (HARNESS_BLOCK_PLUGINS)?")
            tables.update(members)
            continue
        attack, _, backend = name.partition("@")
        if not backend:  # several backends: the one that declares the sets, if only one does
            declaring = {e.obj.backend for e in registry.entries("attacks")
                         if e.obj.name == attack and any(s in e.obj.presets for s in SETS)}
            backend = declaring.pop() if len(declaring) == 1 else ""
        try:
            spec = registry.attack(attack, backend or None)
        except HarnessError as exc:
            choices = list(SETS) + list({e.obj.name for e in registry.entries("attacks")})
            hint = did_you_mean(attack, choices) if "unknown attack" in str(exc) else f" ({exc})"
            raise HarnessError(f"--attacks {name}: unknown attack or set{hint}") from None
        table = {"attack": spec.name, "backend": spec.backend}
        preset = next((s for s in SETS if s in spec.presets), None)
        tables[safe_key(name)] = {**table, "preset": preset} if preset else table
    for key, table in tables.items():  # attacks that pick target classes: the dataset's count
        spec = registry.attack(table["attack"], table["backend"])
        if "n_classes" in spec.defaults:
            tables[key] = {**table, "n_classes": num_classes}
    return tables


def defense_tables(temperatures: str | float | Sequence[str | float], registry: Registry) -> dict[str, dict]:
    """One defense per T (``auto``, or a positive number), keyed ``T<value>``: the registered
    rescaler that declares a ``temperature_option`` (the built-in one divides the logits by T)."""
    rescalers = [e.obj for e in registry.entries("defenses") if e.obj.rescaler and e.obj.temperature_option]
    if not rescalers:
        raise HarnessError("--T: no registered defense rescales logits by a temperature; is the plugin that "
                           "provides it blocked (HARNESS_BLOCK_PLUGINS)?")
    spec = rescalers[0]
    option = spec.temperature_option
    values = temperatures.split(",") if isinstance(temperatures, str) else \
        [temperatures] if isinstance(temperatures, (int, float)) else list(temperatures)
    tables = {}
    for value in values:
        text = str(value).strip()
        if text in spec.keywords.get(option, ()):  # e.g. "auto": resolved on the clean images
            tables["T" + safe_key(text)] = {"defense": spec.name, option: text}
            continue
        try:
            number = float(text)
        except ValueError:
            words = "".join(f"{w} or " for w in spec.keywords.get(option, ()))
            raise HarnessError(f"--T {text}: expected {words}a positive number (1 = logits as they are, "
                               f"1e5 = divided by 1e5)") from None
        if not number > 0 or number == float("inf"):
            raise HarnessError(f"--T {text}: expected auto or a positive number")
        tables["T" + safe_key(text.replace(".", "p"))] = {"defense": spec.name, option: number}
    if not tables:
        raise HarnessError("--T: expected auto or positive numbers separated by commas")
    return tables


def parse_eps(eps: str | float | Sequence[float]) -> list[float]:
    values = eps.split(",") if isinstance(eps, str) else [eps] if isinstance(eps, (int, float)) else list(eps)
    result = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HarnessError(f"--eps {value}: expected budgets separated by commas, e.g. 0.1,0.15") from None
        if not number >= 0:
            raise HarnessError(f"--eps {value}: expected a budget >= 0 (L-inf on [0, 1] pixels, e.g. 0.1)")
        result.append(number)
    if not result:
        raise HarnessError("--eps: expected at least one budget, e.g. 0.1")
    return result


def eval_suite(key: str, model: Mapping[str, Any], registry: Registry, dataset: str = "mnist",
               eps: str | float | Sequence[float] = (0.1,), attacks: str | Sequence[str] = "standard",
               n: int = 1000, temperatures: str | Sequence[str | float] = "auto",
               batch_size: int = 500) -> dict[str, Any]:
    """The suite, as parsed TOML, that evaluates one model."""
    info = registry.get("datasets", dataset).info
    budgets = parse_eps(eps)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HarnessError(f"--n {n}: expected a positive number of test images")
    tables = attack_tables(attacks, registry, info.num_classes)
    defenses = defense_tables(temperatures, registry)
    grids = [{"model": [key], "defense": list(defenses), "attack": list(tables), "eps": budgets}]
    if LARGE_EPS not in budgets:  # every attack at the large budget: what the large-eps check reads
        grids.append({"model": [key], "defense": list(defenses), "attack": list(tables), "eps": [LARGE_EPS]})
    return {"suite": {"name": f"eval-{key}", "description": f"harness eval of {key} on {dataset}"},
            "data": {"dataset": dataset, "test_size": n},
            "eval": {"batch_size": batch_size, "convergence_images": min(n, CONVERGENCE_IMAGES)},
            "models": {key: dict(model)}, "defenses": defenses, "attacks": tables, "grid": grids}


# -- running -------------------------------------------------------------------------------------

def eval_runner(raw: dict[str, Any], registry: Registry, out: Path, data_root: Path, device,
                progress=None, label: str = "harness eval"):
    """The normal :class:`harness.runner.Runner` for the generated suite, validated like a file
    (errors name ``label``); ``out/suite.toml`` will hold the suite. Call its ``preflight()`` to
    build the model once (the checks of harness/modelcheck.py) before anything is written."""
    from harness.runner import Runner
    from harness.suite import suite_from_data
    from harness.tomlwrite import to_toml

    suite = suite_from_data(raw, Path(label), registry)
    out = Path(out)
    suite.path = out / "suite.toml"
    suite.source = (f"# Written by `{label}`; `harness run THIS_FILE --out {out}` continues the run.\n\n"
                    + to_toml(raw))
    return Runner(suite, registry, out, data_root, device, progress)


def eval_model(model: Any, *, dataset: str = "mnist", eps: float | Sequence[float] = (0.1,),
               attacks: str | Sequence[str] = "standard", n: int = 1000, T: str | float | Sequence = "auto",
               weights: str | Path | None = None, kwargs: Mapping[str, Any] | None = None,
               data: tuple[Any, Any] | None = None, out: str | Path | None = None, device: str = "auto",
               batch_size: int = 500, data_dir: str | Path | None = None, progress: bool = False,
               name: str | None = None) -> "pd.DataFrame":
    """Evaluate ``model`` under the strong attack set and return the results table (one row per
    T x attack x eps, worst-case rows and masking checks included; schema: docs/report.md).

    ``model``: a ``torch.nn.Module`` (mapping [N, *input_shape] images in [0, 1] to [N, classes]
    logits), or what ``harness eval`` takes: a harness-saved ``NAME.safetensors``, a TorchScript
    file, or a factory ``"package.module:build"`` / ``"file.py:build"`` with ``weights`` (a
    safetensors state dict) and ``kwargs`` for the factory. ``data``: optional ``(x, y)`` tensors,
    images in [0, 1] and integer labels, evaluated instead of ``dataset``'s test split (the first
    ``n`` are used). ``out``: the run directory (default: a new temporary one, in
    ``frame.attrs["out_dir"]``); an existing one is continued. An in-memory module or ``data`` runs
    in this process only (executor ``local``)."""
    import contextlib

    from harness.device import resolve_device
    from harness.options import data_root as resolve_data_root
    from harness.plugins import load_registry, temporary_plugin
    from harness.progress import RichProgress, SilentProgress

    with contextlib.ExitStack() as stack:
        plugins = []
        if data is not None:
            dataset, record = _data_plugin(data)
            plugins.append(record)
        if _is_module(model):
            key, table, record = _module_plugin(model, name or "model")
            plugins.append(record)
        else:
            key, table = model_table(str(model), None if weights is None else str(weights), kwargs)
        for plugin in plugins:
            stack.enter_context(temporary_plugin(plugin))
        registry = load_registry()
        raw = eval_suite(safe_key(name) if name else key, table, registry, dataset, eps, attacks, n, T, batch_size)
        target = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="harness-eval-"))
        root = Path(data_dir) if data_dir is not None else resolve_data_root(None)
        display = RichProgress() if progress else SilentProgress()
        runner = eval_runner(raw, registry, target, root, resolve_device(device), display, label="harness.eval_model")
        with display:
            frame = runner.run()
    frame.attrs["out_dir"] = target
    return frame


def _is_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(model, torch.nn.Module)


def _plugin(name: str, hook: str, record: Any):
    """A temporary plugin object whose ``hook`` registers one record."""
    import types

    from harness import hookimpl

    def register_one(register):
        register(record)
    return types.SimpleNamespace(__name__=name, **{hook: hookimpl(specname=hook)(register_one)})


def _tensor_digest(*tensors) -> str:
    import torch

    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str((flat.dtype, tuple(tensor.shape))).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _module_plugin(module, name: str):
    """(key, table, plugin): the module as a temporary model plugin ``in-memory``, rebuilt as a copy
    (so the run never changes the caller's module), identified by a hash of its state dict."""
    import copy

    from harness.api import Model
    from harness.modelcheck import check_output

    state = module.state_dict()
    fingerprint = "sha256:" + _tensor_digest(*[state[k] for k in sorted(state)]) + ":" + ",".join(sorted(state))

    def build(options, info):
        copied = copy.deepcopy(module).cpu().eval()
        for param in copied.parameters():
            param.requires_grad_(False)
        check_output(copied, info, f"model {type(module).__name__}")
        return copied

    record = Model(name="in-memory", build=build, pretrained=True, fingerprint=lambda options: fingerprint,
                   description=f"the {type(module).__name__} handed to harness.eval_model")
    return safe_key(name), {"model": "in-memory"}, _plugin("harness-eval-model", "harness_register_models", record)


def _data_plugin(data):
    """(name, plugin): ``(x, y)`` as a temporary dataset plugin ``data`` (both splits the same)."""
    from harness.api import DataInfo, Dataset
    from harness.modelcheck import check_images

    try:
        x, y = data
    except (TypeError, ValueError):
        raise HarnessError("data: expected a pair (x, y) of tensors: images in [0, 1] and integer labels") from None
    check_images(x, y)
    x, y = x.detach().float().cpu(), y.detach().long().cpu()
    info = DataInfo(input_shape=tuple(x.shape[1:]), num_classes=int(y.max()) + 1, mean=float(x.mean()),
                    std=float(x.std()) if len(x) > 1 else 1.0)
    record = Dataset(name="data", fetch=lambda root: [], load=lambda root, train: (x, y), info=info,
                     fingerprint=_tensor_digest(x, y)[:16], description="the (x, y) handed to harness.eval_model")
    return "data", _plugin("harness-eval-data", "harness_register_datasets", record)
