"""Evaluate a model trained anywhere, in one call: ``harness eval MODEL`` and :func:`eval_model`.

Nothing here evaluates: both write an ordinary suite in memory (the model as an ``external`` model,
or an in-memory module as a temporary plugin; an attack set; one temperature-rescaling defense per
T; every attack also at the large budget of its norm that the masking checks read,
``harness.results.diagnostics.LARGE_EPS``) and hand it to the normal :class:`harness.run.runner.Runner`. The
run directory is therefore a normal one: ``results.csv`` with the checks and worst-case rows,
``run.json``, and ``suite.toml`` holding the generated suite, so ``harness run OUT/suite.toml --out
OUT`` continues it and ``harness report``, ``leaderboard`` and ``compare`` read it.

The core names no attack or defense: an attack belongs to the set ``standard`` or ``fast`` by
declaring a preset of that name (the built-in sets, docs/attacks.md, are declared by the
torchattacks and noise plugins), attacks that pick target classes get the dataset's class count
in the option their record names (``classes_option``), and the T axis uses the registered rescaler
that declares a ``temperature_option`` (``registry.defenses.logit_rescaler()``). ``--attacks NAME,...`` picks
attacks by name, each with its ``standard`` (else ``fast``) preset when it has one.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

from harness.suite.generate import DATASET, eval_suite, model_key, model_table

EVAL_COMMAND = "harness eval"  # eval_runner's label for the command
_ONE_AT_A_TIME = threading.Lock()  # eval_model's temporary plugins are seen by every registry built meanwhile
_CALLS = itertools.count(1)       # numbers eval_model's temporary plugins


# -- running -------------------------------------------------------------------------------------

def eval_runner(raw: dict[str, Any], registry: Registry, out: Path, data_root: Path, device,
                progress=None, label: str = EVAL_COMMAND):
    """The normal :class:`harness.run.runner.Runner` for the generated suite, validated like a file
    (errors name ``label``), on the default executor; ``out/suite.toml`` will hold the suite. Call
    its ``preflight()`` to build the model (the checks of harness/kit/modelcheck.py) before anything is
    written: ``run()`` then does not build it again."""
    from harness.errors import SuiteError
    from harness.run.executor import pick_executor
    from harness.run.runner import Runner
    from harness.suite.load import suite_from_data
    from harness.suite.tomlwrite import to_toml

    try:
        suite = suite_from_data(raw, Path(label), registry)
    except SuiteError as exc:
        raise _as_option_error(exc, label) from None
    out = Path(out)
    suite.path = out / "suite.toml"
    suite.source = (f"# Written by `{label}`; `harness run THIS_FILE --out {out}` continues the run.\n\n"
                    + to_toml(raw))
    pick_executor(registry, needed_by=label)  # before anything is written: one line when there is no default
    return Runner(suite, registry, out, data_root, device, progress)


# The generated suite's keys and the option of harness eval (and argument of eval_model) that set them
_OPTIONS = ((re.compile(r"grid\.\d+\.eps$"), "--eps", "eps"), (re.compile(r"data\.test_size$"), "--n", "n"),
            (re.compile(r"eval\.batch_size$"), "--batch-size", "batch_size"),
            (re.compile(r"data\.dataset$"), "--dataset", "dataset"), (re.compile(r"attacks\."), "--attacks", "attacks"),
            (re.compile(r"defenses\."), "--T", "T"), (re.compile(r"models\."), "MODEL", "model"))


def _as_option_error(error: Exception, label: str) -> HarnessError:
    """A generated suite's error, naming the option the user gave instead of a key they never wrote
    (``grid.0.eps`` is ``--eps``)."""
    prefix = f"{label}: "
    text = str(error)
    if not text.startswith(prefix):
        return HarnessError(text)
    key, _, message = text[len(prefix):].partition(": ")
    for pattern, option, argument in _OPTIONS:
        if pattern.match(key):
            return HarnessError(f"{option if label == EVAL_COMMAND else argument}: {message}")
    return HarnessError(text)


def eval_model(model: Any, *, dataset: str = DATASET, eps: float | Sequence[float] = (0.1,),
               attacks: str | Sequence[str] = "standard", n: int = 1000, T: str | float | Sequence = "auto",
               weights: str | Path | None = None, kwargs: Mapping[str, Any] | None = None,
               data: tuple[Any, Any] | None = None, out: str | Path | None = None, device: str = "auto",
               batch_size: int = 500, data_dir: str | Path | None = None, progress: bool = False,
               name: str | None = None, num_classes: int | None = None) -> "pd.DataFrame":
    """Evaluate ``model`` under the strong attack set and return the results table (one row per
    T x attack x eps, worst-case rows and masking checks included; schema: docs/report.md).

    ``model``: a ``torch.nn.Module`` (mapping [N, *input_shape] images in [0, 1] to [N, classes]
    logits), or what ``harness eval`` takes: a harness-saved ``NAME.safetensors``, a TorchScript
    file, or a factory ``"package.module:build"`` / ``"file.py:build"`` with ``weights`` (a
    safetensors state dict) and ``kwargs`` for the factory. ``data``: optional ``(x, y)`` tensors,
    images in [0, 1] and integer labels, evaluated instead of ``dataset``'s test split (the first
    ``n`` are used), with ``num_classes`` classes (default: an in-memory module's output width on
    the first image; for a model file, the largest label + 1, so pass it when the labels do not
    include the last class). ``out``: the run directory (default: a new temporary one, in
    ``frame.attrs["out_dir"]``); an existing one is continued. An in-memory module or ``data`` runs
    in this process only, on the default executor (``local``). Calls from several threads run one
    after the other: the temporary plugins they register are seen by every registry built meanwhile."""
    import contextlib

    from harness.kit.device import resolve_device
    from harness.kit.cli_options import data_root as resolve_data_root
    from harness.plugins import load_registry, temporary_plugin
    from harness.run.progress import RichProgress, SilentProgress

    with _ONE_AT_A_TIME, contextlib.ExitStack() as stack:
        call = next(_CALLS)
        plugins = []
        if data is not None:
            if num_classes is None and _is_module(model):
                num_classes = _output_width(model, data)
            dataset, record = _data_plugin(data, num_classes, f"harness-eval-data-{call}")
            plugins.append(record)
        if _is_module(model):
            key, table, record = _module_plugin(model, name or "model", f"harness-eval-model-{call}")
            plugins.append(record)
        for plugin in plugins:
            stack.enter_context(temporary_plugin(plugin))
        registry = load_registry()
        if not _is_module(model):
            key, table = model_table(str(model), registry, None if weights is None else str(weights), kwargs)
        raw = eval_suite(model_key(name) if name else key, table, registry, dataset, eps, attacks, n, T, batch_size)
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


def module_fingerprint(module) -> str:
    """The identity of an in-memory module for the run's hashes: its state dict, and its code: the
    class (module and qualified name) and source of every submodule (TorchScript: its ``code``) and
    the module's ``repr`` (layer settings without weights, such as an activation's slope). A change
    of ``forward`` in a class's source gives another fingerprint; a change in a function the
    class calls from elsewhere does not."""
    import inspect

    import torch

    state = module.state_dict()
    code = hashlib.sha256()
    sources: dict[type, str] = {}
    for sub in module.modules():
        kind = type(sub)
        if isinstance(sub, torch.jit.ScriptModule):
            try:
                text = sub.code
            except Exception:  # noqa: BLE001 - a script module without Python-visible code
                text = ""
        elif kind not in sources:
            try:
                text = sources[kind] = inspect.getsource(kind)
            except (OSError, TypeError):  # defined where no source file is kept (an interactive session)
                text = sources[kind] = ""
        else:
            text = sources[kind]
        code.update(f"{kind.__module__}.{kind.__qualname__}\n{text}\n".encode())
    code.update(repr(module).encode())
    return (f"sha256:{_tensor_digest(*[state[k] for k in sorted(state)])}:code-{code.hexdigest()[:16]}:"
            + ",".join(sorted(state)))


def _output_width(module, data) -> int | None:
    """The number of logits ``module`` returns for the first image of ``data`` (a copy of the module, in
    eval mode, on the CPU), or None when that fails (the model checks then say why)."""
    import copy

    import torch

    try:
        x = data[0][:1].detach().float().cpu()
        with torch.no_grad():
            out = copy.deepcopy(module).cpu().eval()(x)
    except Exception:  # noqa: BLE001 - user code; harness.kit.modelcheck.check_output reports it properly
        return None
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def _module_plugin(module, name: str, plugin_name: str):
    """(key, table, plugin): the module as a temporary model plugin ``in-memory``, rebuilt as a copy
    (so the run never changes the caller's module), identified by :func:`module_fingerprint`."""
    import copy

    from harness.api import Model
    from harness.kit.modelcheck import check_output

    fingerprint = module_fingerprint(module)

    def build(options, info):
        copied = copy.deepcopy(module).cpu().eval()
        for param in copied.parameters():
            param.requires_grad_(False)
        check_output(copied, info, f"model {type(module).__name__}")
        return copied

    record = Model(name="in-memory", build=build, pretrained=True, fingerprint=lambda options: fingerprint,
                   description=f"the {type(module).__name__} handed to harness.eval_model")
    return model_key(name), {"model": "in-memory"}, _plugin(plugin_name, "harness_register_models", record)


def _data_plugin(data, num_classes: int | None, plugin_name: str):
    """(name, plugin): ``(x, y)`` as a temporary dataset plugin ``data`` (both splits the same) of
    ``num_classes`` classes (None: the largest label + 1)."""
    from harness.api import DataInfo, Dataset
    from harness.kit.modelcheck import check_images

    try:
        x, y = data
    except (TypeError, ValueError):
        raise HarnessError("data: expected a pair (x, y) of tensors: images in [0, 1] and integer labels") from None
    check_images(x, y)
    if num_classes is None:
        num_classes = int(y.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise HarnessError(f"num_classes {num_classes!r}: expected the number of classes, an integer >= 2")
    check_images(x, y, info_classes=num_classes)
    x, y = x.detach().float().cpu(), y.detach().long().cpu()
    info = DataInfo(input_shape=tuple(x.shape[1:]), num_classes=num_classes, mean=float(x.mean()),
                    std=float(x.std()) if len(x) > 1 else 1.0)
    record = Dataset(name="data", fetch=lambda root: [], load=lambda root, train: (x, y), info=info,
                     fingerprint=_tensor_digest(x, y)[:16],
                     description="the (x, y) handed to harness.eval_model")
    return "data", _plugin(plugin_name, "harness_register_datasets", record)
