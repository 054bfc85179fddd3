"""What plugins hand to ``register`` and what the core hands back to them.

Every record has a ``name``, a one-line ``description`` and ``defaults``: the parameters a suite may
set, with their default values. The core rejects suite keys that are not in ``defaults`` ("did you
mean ...?") and checks each value against the default's type. A record may add ``check(options)``,
called when the suite is loaded, that raises ``ValueError("key: what is expected")`` for values the
type alone cannot rule out (a negative temperature, k larger than the layer). ``presets`` maps a
name to a set of options a suite can select with ``preset = "name"``; keys the suite sets itself
override the preset's. ``keywords`` maps an option to strings it accepts besides its default's type
(e.g. ``{"T": ("auto",)}`` for a float option that can also be "auto").

This module imports no heavy library; torch types appear only in annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from harness.results.table import Row
    from harness.run.jobs import Job


@dataclass(frozen=True)
class DataInfo:
    """Shape and statistics of a dataset, handed to model builders."""

    input_shape: tuple[int, ...]
    num_classes: int
    mean: float
    std: float


@dataclass(frozen=True)
class Dataset:
    """A dataset plugin.

    ``fetch(root)`` makes sure every file is under ``root`` and verified (downloading if it must) and
    returns the file paths; it raises :class:`harness.errors.DataError` with a fix when it cannot.
    ``load(root, train)`` returns ``(x, y)``: float32 images in [0, 1] shaped ``[N, *input_shape]``
    and int64 labels; it is only called after ``fetch`` succeeded.
    ``fingerprint`` identifies the content (e.g. a hash of the file checksums) for model caching.
    """

    name: str
    fetch: Callable[[Path], list[Path]]
    load: Callable[[Path, bool], tuple["torch.Tensor", "torch.Tensor"]]
    info: DataInfo
    fingerprint: str
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    """A model plugin: ``build(options, info)`` returns an ``nn.Module`` mapping [0, 1] inputs to logits.

    ``metadata(module)`` (optional) returns string key/values stored in the exported safetensors
    header, so the file can be used without the harness.

    Resume points (optional protocol of the built module): ``resume_points`` lists submodule names
    in forward order and ``forward_from(name, h)`` continues the forward pass from the input ``h`` of
    that submodule. Learners use it to cache the output of frozen layers.

    A ``pretrained`` model's ``build`` returns it already trained (e.g. weights read from a file):
    a suite may give it no learner stages. ``fingerprint(options)`` (optional) returns a string that
    identifies the content ``build`` reads (a hash of a weights file); it is part of the model's
    hash, so a changed file is a new model, and raises ``ValueError("key: what is wrong")`` when
    that content is missing.

    ``loader(model, weights, kwargs)`` (optional) is what ``harness eval MODEL`` and
    ``harness.eval_model`` ask for a model named on the command line: it turns the user's ``MODEL``
    (a path or a factory), ``--weights`` and ``--arg`` keyword arguments into ``(name, options)``, a
    name for the model and the options of its suite table, or raises
    :class:`harness.errors.HarnessError` saying what to pass instead. The first model plugin (by
    name) that declares one is used.
    """

    name: str
    build: Callable[[dict[str, Any], DataInfo], "nn.Module"]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    metadata: Callable[["nn.Module"], dict[str, str]] | None = None
    check: Callable[[dict[str, Any]], None] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pretrained: bool = False
    fingerprint: Callable[[dict[str, Any]], str] | None = None
    loader: Callable[[str, str | None, Mapping[str, Any]], tuple[str, dict[str, Any]]] | None = None


@dataclass
class TrainContext:
    """Everything a learner stage gets. ``params`` are the parameters this stage trains (already
    resolved from the stage's ``params`` patterns); ``x``/``y`` are the training split on ``device``.
    ``progress(total, description)`` returns a callable ``advance(n=1, **stats)``.
    """

    model: "nn.Module"
    params: dict[str, "torch.Tensor"]
    options: dict[str, Any]
    x: "torch.Tensor"
    y: "torch.Tensor"
    x_test: "torch.Tensor"
    y_test: "torch.Tensor"
    device: "torch.device"
    seed: int
    progress: Callable[..., Callable[..., None]]
    info: DataInfo | None = None
    # A folder where the learner may keep resumable state between trainings (e.g. snapshots of a
    # long schedule that a later, longer training continues from); None when the model cache is off.
    # It lives in the model cache, under learner-state/<learner name>/: read back only what you wrote.
    state_dir: Path | None = None


@dataclass(frozen=True)
class Learner:
    """A learner plugin: ``train(ctx)`` updates ``ctx.params`` in place and returns a JSON-able dict
    (per-epoch history, statistics) that is stored with the trained model.

    ``optional``: options added after models were trained and cached. A suite may set them like
    ``defaults``, but one that is not set stays out of the stage's options, and so out of the model's
    hash: every model trained before the option existed keeps its hash and stays in the cache. The
    core hands ``train`` the value given here when the suite does not set one."""

    name: str
    train: Callable[[TrainContext], dict[str, Any]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[dict[str, Any]], None] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    optional: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    """An attack plugin: ``build(model, eps, options)`` returns ``attack(x, y) -> x_adv`` working on
    batches of [0, 1] images on the model's device. ``backend`` names the library that runs it; the
    same attack name may be registered by several backends.

    The threat model: ``norm`` ("linf" or "l2") is the norm eps is measured in. A ``minimal`` attack
    (CW, DeepFool, FAB) looks for the smallest perturbation and ignores eps: the runner counts its
    result as a success only where the perturbation's norm is at most eps. ``gradient_free`` marks
    score- or decision-based attacks (Square, HopSkipJump), which gradient masking cannot fool.
    ``steps_option`` names the option holding the iteration count, so the evaluation can check that
    more iterations would not have found more (see harness/results/diagnostics.py). ``classes_option`` names
    the option holding the number of classes the attack picks target classes from (``harness eval``
    sets it to the dataset's class count). A ``baseline`` is random
    noise of the same size, not an attack: an attack that does worse than it is broken or fooled.
    ``requires`` names the distributions the attack runs on (e.g. ``("torchattacks",)``): their
    versions are recorded with every trained model and run (``run.json``).

    A ``transfer`` attack makes its adversarial examples on another model of the suite and the cell
    scores them on its own. Its options must include ``source`` (a model key of the suite: the same
    dataset and seed as the cell, trained first if need be), ``source_defense`` (a defense key, or
    "none": the view of the source the examples are made through) and ``via`` (an attack key of the
    suite: the white-box attack run on the source). The core checks the keys when the suite loads, puts
    the source's configuration into the cell's hash, and calls ``build(model, eps, options)`` with
    ``options["source"]`` the source module in its view and ``options["via"]`` a function
    ``(module, eps) -> attack`` that builds the ``via`` attack with its suite options.
    """

    name: str
    backend: str
    build: Callable[["nn.Module", float, dict[str, Any]], Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[dict[str, Any]], None] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    norm: str = "linf"
    minimal: bool = False
    gradient_free: bool = False
    steps_option: str | None = None
    baseline: bool = False
    requires: tuple[str, ...] = ()
    classes_option: str | None = None
    transfer: bool = False

    @property
    def kind(self) -> str:
        """single-step, iterative, minimal, gradient-free, transfer or baseline: what the checks compare."""
        if self.baseline:
            return "baseline"
        if self.transfer:
            return "transfer"
        if self.gradient_free:
            return "gradient-free"
        if self.minimal:
            return "minimal"
        return "iterative" if self.steps_option else "single-step"


@dataclass(frozen=True)
class Defense:
    """A defense or rescaler plugin: ``wrap(model, options)`` returns the module attacks see.

    ``temperature_option`` names the option holding the logit temperature the attacks see (after
    ``fit``): results record its value as ``T`` (1 for defenses without one).
    ``fit(model, options, x, y)`` (optional) resolves data-dependent options on the clean test images
    before ``wrap`` (e.g. ``T = "auto"``) and returns the options to use. A ``rescaler`` never changes
    a prediction, only what attacks' losses see: an adversarial example found through any rescaler of
    a model is one for the model itself, so worst-case accuracy pools over them.
    """

    name: str
    wrap: Callable[["nn.Module", dict[str, Any]], "nn.Module"]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[dict[str, Any]], None] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fit: Callable[["nn.Module", dict[str, Any], "torch.Tensor", "torch.Tensor"], dict[str, Any]] | None = None
    rescaler: bool = False
    temperature_option: str | None = None


# -- what an executor gets and hands back ------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """Cells that share one trained model: the same ``dataset``, ``model`` key and ``seed``. Each of
    ``cells`` is a :class:`harness.run.jobs.Job`, the cell as the runner resolved it (``job.cell``,
    ``job.config_hash``): an executor hands it back to the worker as it is."""

    dataset: str
    model: str
    seed: int
    cells: tuple["Job", ...]


@dataclass(frozen=True)
class Trained:
    """What :meth:`CellWorker.train` did: the model's hash and a line for the user, or an ``error``."""

    model_hash: str
    message: str
    error: str = ""


@dataclass
class Outcome:
    """One cell's :class:`harness.results.table.Row` and its per-image results, which worst-case
    rows, the convergence test and ``harness compare`` need: ``{"correct": uint8 tensor, "robust":
    uint8 tensor}`` plus ``"robust_2x"`` (the first images, twice the steps) when the convergence
    run ran; None on failure."""

    row: "Row"
    examples: dict[str, Any] | None = None


class CellWorker(Protocol):
    """What an executor runs cells with (the core's is :class:`harness.run.worker.Worker`). It
    pickles to a few kilobytes and works in any process that has the harness and the same plugins
    installed and sees the data root and the model cache."""

    device: "torch.device"
    cache: Any  # the shared model cache (harness.run.cache.ModelCache), None when the run has none
    token: str  # the same worker wherever it is unpickled: a process may keep it for the next task

    def run_group(self, group: Group, stopping: Callable[[], bool] = ...) -> Iterator[Outcome]:
        """The group's outcomes, one cell at a time, in this process; stops early when ``stopping()``."""

    def train(self, group: Group) -> Trained:
        """Make sure the group's model is in ``OUT/models`` and the cache, training it if needed."""

    def run_cell(self, job: "Job", model_hash: str) -> Outcome:
        """One cell, with the model :meth:`train` stored under ``model_hash``."""

    def failed(self, job: "Job", message: str, model_hash: str = "") -> Outcome:
        """The outcome of a cell that could not run."""

    def for_device(self, device: str) -> "CellWorker":
        """The same worker on another device, e.g. "cuda" inside a task that was given one GPU."""


@dataclass
class Plan:
    """What an executor's ``run`` gets: the ``groups`` to run, the ``worker`` to run them with,
    ``stopping()`` (true after Ctrl-C) and ``log(message)`` (one line for the user)."""

    groups: list[Group]
    worker: CellWorker
    stopping: Callable[[], bool]
    log: Callable[[str], None]


@dataclass(frozen=True)
class Executor:
    """An executor plugin: runs a suite's cells somewhere (in process, on a Ray cluster, on Slurm)
    and hands each cell's outcome back to the runner. ``harness run --executor NAME`` picks one;
    ``defaults`` are its options (``--executor-option KEY=VALUE``, checked like suite options and
    by ``check``).

    ``run(plan, options)`` returns an iterator (write it as a generator) of :class:`Outcome`, one
    per cell of ``plan``, each yielded as soon as its cell is done, in any order. The runner stays
    in charge of the run directory: it only hands over the cells that have no ``ok`` row yet,
    writes each outcome's row to ``results.csv`` atomically as it arrives, and writes the
    end-of-run checks. An executor writes nothing there itself.

    ``plan`` (:class:`Plan`) holds:

    - ``groups``: the cells to run, as :class:`Group` (``dataset``, ``model``, ``seed``, ``cells``):
      the cells of a group share one trained model;
    - ``worker``: a :class:`CellWorker`. ``worker.run_group(group, stopping)`` runs a group in this
      process (what ``local`` does). ``worker.train(group)`` trains the group's model (or finds
      it) and stores it in ``OUT/models`` and the shared cache, returning a :class:`Trained`;
      ``worker.run_cell(cell, model_hash)`` then loads that model from the cache and returns the
      cell's outcome; ``worker.failed(cell, message)`` is the outcome of a cell that could not run;
    - ``stopping()``: true after Ctrl-C. Submit no new cell, yield the outcomes of the cells
      already running, then return; the runner records them and stops. On a second Ctrl-C the
      runner stops reading and calls the iterator's ``close()``: cancel what is still running in a
      ``finally:`` block;
    - ``log(message)``: one line for the user, shown above the progress bars.

    A cell that fails must still yield an outcome (``worker.failed``); an exception raised by
    ``run`` ends the run, with the rows received so far kept, so keep it for errors that concern
    the whole run (a missing library, an unreachable cluster: raise :class:`harness.errors.HarnessError`
    with the fix; :func:`harness.errors.one_line` turns any exception into one line).

    ``default``: this executor runs the cells when ``--executor`` is not given (the built-in
    ``local`` claims it); a second executor claiming it is an error when a run needs the default.
    """

    name: str
    run: Callable[[Plan, dict[str, Any]], Iterator[Outcome]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[dict[str, Any]], None] | None = None
    default: bool = False
