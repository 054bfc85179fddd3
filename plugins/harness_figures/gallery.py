"""Diagnostic figures of a trained model (``NAME.safetensors`` + ``NAME.json``) on its test images.

* :func:`diagnose_gradients` (the thesis's Figure 3.1): the share of test images whose cross-entropy
  input gradient is exactly zero, against the logit temperature T, with the ``auto`` T marked.
* :func:`perturbation_gallery` (the thesis's Figure 3.3): successful adversarial examples of one
  attack: the original, the perturbation and the adversarial image, captioned "true → predicted".

The test images are the first ``n`` of the dataset named in the sidecar's ``config``. matplotlib
(Agg backend) and torch are imported inside the functions.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.run.modelstore import read_sidecar
from harness.suite.resolve import OptionError, resolve_options, split_pairs
from harness_figures.show import default_out, input_shape, model_path, pyplot, save, stage_summary

POOL = 1000        # perturbations: attack at most this many test images looking for successes
ATTACK_BATCH = 100  # ... in batches of this size, stopping once n successes are found
CSV_FIELDS = ("T", "share_zero", "share_zero_correct", "share_nonfinite", "n", "n_correct")


# -- model and data ------------------------------------------------------------------------------
@dataclass
class Loaded:
    path: Path
    sidecar: dict[str, Any]
    module: Any
    registry: Any
    dataset: str
    x: Any
    y: Any
    shape: tuple[int, ...] = field(default_factory=tuple)


def load(model_file: Path | str, root: Path, n: int, device="cpu", registry=None) -> Loaded:
    """The model rebuilt through its plugin, and the first ``n`` test images of its dataset on ``device``."""
    from harness.run.modelstore import load_model
    from harness.plugins import load_registry

    path = model_path(model_file)
    sidecar = read_sidecar(path)
    dataset = (sidecar.get("config") or {}).get("dataset")
    if not isinstance(dataset, str) or "model" not in sidecar or "info" not in sidecar:
        raise HarnessError(f"{path.with_suffix('.json')}: not a harness model sidecar (needs model, info and "
                           f"config.dataset)")
    registry = registry or load_registry()
    module, _ = load_model(path, registry, device)
    source = registry.datasets.get(dataset)
    source.fetch(root)
    x, y = source.load(root, False)
    x, y = x[:n].to(device), y[:n].to(device)
    return Loaded(path, sidecar, module, registry, dataset, x, y, input_shape(sidecar, path))


# -- Figure 3.1: zero gradients vs T ---------------------------------------------------------------
def powers_of_ten(t_min: float, t_max: float) -> list[float]:
    """Every power of ten in [t_min, t_max]."""
    for name, value in (("--t-min", t_min), ("--t-max", t_max)):
        if not (math.isfinite(value) and value > 0):
            raise HarnessError(f"{name} {value:g}: expected a positive temperature")
    if t_min > t_max:
        raise HarnessError(f"--t-min {t_min:g} is larger than --t-max {t_max:g}; swap them")
    low, high = math.ceil(math.log10(t_min) - 1e-9), math.floor(math.log10(t_max) + 1e-9)
    if low > high:
        raise HarnessError(f"no power of ten between --t-min {t_min:g} and --t-max {t_max:g}; widen the range")
    return [10.0 ** k for k in range(low, high + 1)]


@dataclass
class GradientDiagnosis:
    curve: list[dict[str, Any]]
    auto_T: float | None
    auto_note: str            # why there is no auto T, or ""
    png: Path
    csv: Path | None
    accuracy: float
    n: int
    dataset: str

    def table(self) -> list[str]:
        lines = [f"{'T':>8}  {'zero (all)':>10}  {'zero (correct)':>14}  {'non-finite':>10}"]
        for row in self.curve:
            mark = "  <- auto" if self.auto_T is not None and row["T"] == self.auto_T else ""
            lines.append(f"{format_T(row['T']):>8}  {_pct(row['share_zero']):>10}  "
                         f"{_pct(row['share_zero_correct']):>14}  {_pct(row['share_nonfinite']):>10}{mark}")
        auto = format_T(self.auto_T) if self.auto_T is not None else f"none ({self.auto_note})"
        lines.append(f"{self.n} test images of {self.dataset}, clean accuracy {_pct(self.accuracy)}; auto T: {auto}")
        return lines


def format_T(value: float) -> str:
    """1, 10, 100, 1000, 1e4, 1e5, ... (powers of ten from 1e4 as 1eK), else :g."""
    if value >= 1e4:
        k = round(math.log10(value))
        if math.isclose(value, 10.0 ** k, rel_tol=1e-9):
            return f"1e{k}"
    return f"{value:g}"


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"


def diagnose_gradients(model_file: Path | str, root: Path, t_min: float = 1.0, t_max: float = 1e7, n: int = 1000,
                       out: Path | None = None, csv_out: Path | None = None, device="cpu") -> GradientDiagnosis:
    """Zero-gradient shares for every power of ten in [t_min, t_max] and the auto T; writes the PNG
    (default ``<model>-gradients.png``) and, if asked, the CSV."""
    from harness.kit.gradients import AUTO_TARGET, DEFAULT_TEMPERATURES, auto_temperature, zero_share_curve

    temperatures = powers_of_ten(t_min, t_max)
    loaded = load(model_file, root, n, device)
    curve = zero_share_curve(loaded.module, loaded.x, loaded.y, temperatures)
    try:
        auto_T, note = auto_temperature(loaded.module, loaded.x, loaded.y), ""
    except HarnessError as exc:
        auto_T, note = None, (f"no T up to {format_T(max(DEFAULT_TEMPERATURES))} restores {100 * AUTO_TARGET:g}% "
                              "of the gradients")
        if "none of the images" in str(exc):
            note = "no image classified correctly"
    first = curve[0]
    accuracy = first["n_correct"] / first["n"] if first["n"] else float("nan")
    diagnosis = GradientDiagnosis(curve, auto_T, note, Path(out) if out else default_out(loaded.path, "gradients"),
                                  Path(csv_out) if csv_out else None, accuracy, first["n"], loaded.dataset)
    if diagnosis.csv is not None:
        write_curve_csv(curve, diagnosis.csv)
    plot_gradients(diagnosis, loaded)
    return diagnosis


def write_curve_csv(curve: Sequence[dict[str, Any]], path: Path) -> None:
    from harness.kit.atomic import replace_atomically

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(curve)

    try:
        replace_atomically(path, write)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write ({exc.strerror or exc})") from None


def plot_gradients(diagnosis: GradientDiagnosis, loaded: Loaded) -> Path:
    plt = pyplot()
    curve = diagnosis.curve
    temperatures = [row["T"] for row in curve]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.plot(temperatures, [100 * r["share_zero"] for r in curve], "o-", color="C0", linewidth=2,
            label=f"all {diagnosis.n} test images")
    ax.plot(temperatures, [100 * r["share_zero_correct"] for r in curve], "s--", color="C1", markersize=5,
            label=f"correctly classified ({curve[0]['n_correct']})")
    if any(r["share_nonfinite"] > 0 for r in curve):
        ax.plot(temperatures, [100 * r["share_nonfinite"] for r in curve], "^:", color="C3",
                label="non-finite gradient (NaN/inf)")
    low, high = min(temperatures), max(temperatures)
    if diagnosis.auto_T is not None:
        inside = low <= diagnosis.auto_T <= high
        label = (f"auto T = {format_T(diagnosis.auto_T)} (≥ 99% of correct ones un-masked)"
                 + ("" if inside else ", outside the plotted range"))
        if inside:
            ax.axvline(diagnosis.auto_T, color="C2", linestyle=":", linewidth=2, label=label)
        else:
            ax.plot([], [], color="C2", linestyle=":", linewidth=2, label=label)
    else:
        ax.plot([], [], " ", label=f"auto T: none ({diagnosis.auto_note})")
    ax.set_xscale("log")
    if low == high:
        ax.set_xlim(low / 3, high * 3)
    else:
        ax.set_xlim(low / 2, high * 2)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("temperature T (the loss sees logits / T)")
    ax.set_ylabel("images with an exactly zero input gradient (%)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=9, loc="upper right")
    for row in curve:
        if row["share_zero"] > 0:
            ax.annotate(_pct(row["share_zero"]), (row["T"], 100 * row["share_zero"]), textcoords="offset points",
                        xytext=(7, 4), fontsize=8, color="C0")
    ax.set_title(f"{loaded.path.stem}: share of exactly zero input gradients vs T\n{stage_summary(loaded.sidecar)}\n"
                 f"first {diagnosis.n} {loaded.dataset} test images, clean accuracy {_pct(diagnosis.accuracy)}",
                 fontsize=9)
    fig.tight_layout()
    return save(fig, diagnosis.png)


# -- Figure 3.3: adversarial examples ----------------------------------------------------------------
def attack_options(spec, pairs: Sequence[str], where: str) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs resolved over the attack's defaults like a suite's keys
    (harness.suite.resolve), then checked by the attack."""
    try:
        given = split_pairs(pairs, "--option")
        return resolve_options(spec, given, where, text=True)
    except OptionError as exc:
        if not exc.key:
            raise HarnessError(f"{exc.message}, e.g. steps=40") from None
        shown = f"{exc.key}={given[exc.key].strip()}" if exc.key in given else exc.key
        raise HarnessError(f"--option {shown}: {exc.message}") from None


def rescaler_options(rescaler, text: str) -> dict[str, Any]:
    """The rescaler's options with its temperature set from ``--T TEXT``, checked by the plugin."""
    try:
        return resolve_options(rescaler, {rescaler.temperature_option: text}, f"defense '{rescaler.name}'", text=True)
    except OptionError as exc:
        raise HarnessError(f"--T {text}: {exc.message}") from None


@dataclass
class Example:
    original: Any   # numpy [C, H, W] or [H, W]
    adversarial: Any
    true: int
    predicted: int


@dataclass
class GalleryResult:
    png: Path
    examples: list[Example]
    attacked: int
    correct: int
    fooled: int
    T: float
    summary: str


def perturbation_gallery(model_file: Path | str, root: Path, attack: str, backend: str | None, eps: float,
                         T: str | float = 1.0, n: int = 8, options: Sequence[str] = (), seed: int = 0,
                         out: Path | None = None, device="cpu", pool: int = POOL) -> GalleryResult:
    """Attack the first test images (at most ``pool``, in batches, until ``n`` are fooled) through the
    registered logit rescaler at temperature ``T`` (a number, or one of its keywords such as auto) and
    draw the first ``n`` successes. Writes a figure saying so when none."""
    import torch

    from harness.plugins import load_registry

    if not (math.isfinite(eps) and eps > 0):
        raise HarnessError(f"--eps {eps:g}: expected a positive perturbation size")
    text = T if isinstance(T, str) else repr(float(T))
    registry = load_registry()
    try:
        rescaler = registry.defenses.logit_rescaler()
    except HarnessError as exc:
        raise HarnessError(f"--T: {exc}") from None
    rescaling = rescaler_options(rescaler, text)
    backends = sorted(e.obj.backend for e in registry.attacks.entries() if e.obj.name == attack)
    if backend is None and len(backends) > 1:
        raise HarnessError(f"attack '{attack}' is provided by backends {', '.join(backends)}; "
                           f"choose one with --backend")
    spec = registry.attacks.get(attack, backend)  # unknown names fail before any data is read
    where = f"attack '{spec.name}@{spec.backend}'"
    chosen = attack_options(spec, options, where)
    loaded = load(model_file, root, pool, device, registry)
    fitted = rescaler.fit(loaded.module, rescaling, loaded.x, loaded.y) if rescaler.fit else rescaling
    temperature = float(fitted[rescaler.temperature_option])
    how = f" ({rescaling[rescaler.temperature_option]})" if fitted != rescaling else ""
    wrapped = rescaler.wrap(loaded.module, fitted).to(device).eval()
    try:
        attack_fn = spec.build(wrapped, eps, dict(chosen))
    except ValueError as exc:
        raise HarnessError(f"{where}: {exc}") from None
    torch.manual_seed(seed)
    examples, attacked, correct_total, fooled_total = collect_examples(wrapped, attack_fn, spec, eps, loaded.x,
                                                                       loaded.y, n, where)
    summary = (f"{spec.name}@{spec.backend}, {spec.norm} eps={eps:g}, T={format_T(temperature)}{how}: "
               f"fooled {fooled_total} of {correct_total} correctly classified among the first {attacked} test images")
    png = Path(out) if out else default_out(loaded.path, "perturbations")
    plot_gallery(examples, loaded, png, spec, eps, summary)
    return GalleryResult(png, examples, attacked, correct_total, fooled_total, float(temperature), summary)


def collect_examples(wrapped, attack_fn, spec, eps: float, images, labels, n: int, where: str):
    """Attack ``images`` in batches of ATTACK_BATCH until ``n`` are fooled (checking the threat model
    as the runner does). Returns (examples, attacked, correctly classified, fooled)."""
    import torch

    from harness.kit.measures import TOLERANCE, perturbation_norm

    examples: list[Example] = []
    attacked = correct_total = fooled_total = 0
    for start in range(0, len(labels), ATTACK_BATCH):
        if len(examples) >= n:
            break
        x, y = images[start:start + ATTACK_BATCH], labels[start:start + ATTACK_BATCH]
        with torch.no_grad():
            correct = wrapped(x).argmax(1) == y
        try:
            adv = attack_fn(x, y).detach()
        except ValueError as exc:
            raise HarnessError(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if float(adv.min()) < -1e-6 or float(adv.max()) > 1 + 1e-6:
            raise HarnessError(f"{where} returned pixels outside [0, 1]")
        size = perturbation_norm(adv - x, spec.norm)
        inside = size <= eps + TOLERANCE[spec.norm]
        if not spec.minimal and not bool(inside.all()):
            raise HarnessError(f"{where} left the {spec.norm} ball of eps={eps:g} "
                               f"(largest perturbation {float(size.max()):.4g})")
        with torch.no_grad():
            predicted = wrapped(adv).argmax(1)
        fooled = correct & inside & (predicted != y)
        attacked += len(y)
        correct_total += int(correct.sum())
        fooled_total += int(fooled.sum())
        for i in fooled.nonzero().flatten().tolist():
            if len(examples) < n:
                examples.append(Example(x[i].detach().cpu().numpy(), adv[i].detach().cpu().numpy(),
                                        int(y[i]), int(predicted[i])))
    return examples, attacked, correct_total, fooled_total


def _image(array, shape: tuple[int, ...]):
    """[H, W] grey or [H, W, 3] RGB for imshow."""
    array = array.reshape(shape)
    if len(shape) == 3 and shape[0] == 3:
        return array.transpose(1, 2, 0)
    if len(shape) == 3 and shape[0] == 1:
        return array[0]
    if len(shape) == 2:
        return array
    side = math.isqrt(array.size)
    if side * side == array.size:
        return array.reshape(side, side)
    raise HarnessError(f"cannot draw inputs of shape {list(shape)} as images (need C,H,W with C 1 or 3)")


def plot_gallery(examples: list[Example], loaded: Loaded, png: Path, spec, eps: float, summary: str) -> Path:
    """Columns: one example each; rows: original, perturbation (diverging, symmetric, one scale for
    all), adversarial. Up to 8 columns per block; more examples wrap into further blocks."""
    return save(gallery_figure(examples, loaded, spec, eps, summary), png)


def gallery_figure(examples: list[Example], loaded: Loaded, spec, eps: float, summary: str):
    """The matplotlib figure of :func:`plot_gallery`, not yet saved."""
    import numpy as np

    plt = pyplot()
    title = f"{loaded.path.stem}: successful adversarial examples\n{summary}"
    if not examples:
        fig = plt.figure(figsize=(7.5, 2.6))
        fig.text(0.5, 0.62, "no successful adversarial examples", ha="center", va="center", fontsize=15,
                 color="C3")
        fig.text(0.5, 0.3, summary, ha="center", va="center", fontsize=8, wrap=True)
        fig.suptitle(loaded.path.stem, fontsize=10)
        return fig
    shape = loaded.shape
    deltas = [_image(e.adversarial - e.original, shape) for e in examples]
    deltas = [d.mean(2) if d.ndim == 3 else d for d in deltas]  # RGB: the channel mean
    limit = float(max(np.abs(d).max() for d in deltas)) or 1.0
    if spec.norm == "linf" and not spec.minimal:
        limit = max(limit, eps)  # one scale for every gallery of this eps
    cols = min(len(examples), 8)
    blocks = math.ceil(len(examples) / cols)
    cell, head, gap = 1.25, 0.95, 0.35  # inches: per image row, for the title, between blocks
    height = blocks * 3 * cell + head + gap * (blocks - 1) + 0.2
    width = cell * cols + 1.9
    fig = plt.figure(figsize=(width, height))
    ratios = []
    for block in range(blocks):
        ratios += [1, 1, 1] + ([gap / cell] if block < blocks - 1 else [])
    grid = fig.add_gridspec(len(ratios), cols, height_ratios=ratios, left=0.9 / width, right=1 - 1.1 / width,
                            bottom=0.2 / height, top=1 - head / height, wspace=0.08, hspace=0.22)
    axes = {(block, row, col): fig.add_subplot(grid[4 * block + row, col])
            for block in range(blocks) for row in range(3) for col in range(cols)}
    for ax in axes.values():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    shown = None
    for index, (example, delta) in enumerate(zip(examples, deltas)):
        block, col = divmod(index, cols)
        top, middle, bottom = (axes[block, row, col] for row in range(3))
        original, adversarial = _image(example.original, shape), _image(example.adversarial, shape)
        top.imshow(original, interpolation="nearest", **({} if original.ndim == 3 else grey))
        shown = middle.imshow(delta, interpolation="nearest", cmap="RdBu_r", vmin=-limit, vmax=limit)
        bottom.imshow(np.clip(adversarial, 0, 1), interpolation="nearest", **({} if adversarial.ndim == 3 else grey))
        for ax in (top, middle, bottom):
            ax.set_frame_on(True)
            for side in ax.spines.values():
                side.set_color("0.75")
        top.set_title(f"{example.true} → {example.predicted}", fontsize=10, pad=3)
        norm = float(np.abs(example.adversarial - example.original).max()) if spec.norm == "linf" else \
            float(np.sqrt(((example.adversarial - example.original) ** 2).sum()))
        bottom.set_xlabel(f"{'L∞' if spec.norm == 'linf' else 'L2'} {norm:.3g}", fontsize=7, labelpad=2)
    for block in range(blocks):
        for row, label in enumerate(("original", "perturbation", "adversarial")):
            axes[block, row, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title + "\ncaption: true → predicted label", fontsize=9)
    bar = fig.add_axes([1 - 0.85 / width, 0.25, 0.15 / width, 0.5])
    colorbar = fig.colorbar(shown, cax=bar)
    colorbar.set_label("perturbation δ (" + ("channel mean, " if len(shape) == 3 and shape[0] == 3 else "")
                       + "blue −, red +)", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    return fig


def side_by_side_figure(panels: Sequence[tuple[str, list[Example]]], shape: tuple[int, ...], limit: float,
                        title: str, cols: int = 5):
    """The thesis's Figure 3.3: perturbations only, ``cols`` columns per net with the nets side by side
    (the first panel on the left), each image captioned "true → predicted", one symmetric colour scale
    (±``limit``) for every image."""
    plt = pyplot()
    rows = max([1] + [math.ceil(len(examples) / cols) for _, examples in panels])
    cell, head, gap = 1.1, 0.95, 0.45  # inches: per image, for the titles, between panels
    width = cell * cols * len(panels) + gap * (len(panels) - 1) + 1.3
    height = cell * rows + head + 0.15
    fig = plt.figure(figsize=(width, height))
    ratios = []
    for index in range(len(panels)):
        ratios += [1.0] * cols + ([gap / cell] if index < len(panels) - 1 else [])
    grid = fig.add_gridspec(rows, len(ratios), width_ratios=ratios, left=0.15 / width, right=1 - 1.15 / width,
                            bottom=0.15 / height, top=1 - head / height, wspace=0.08, hspace=0.32)
    shown = None
    for index, (name, examples) in enumerate(panels):
        first = index * (cols + 1)
        axes = [fig.add_subplot(grid[r, first + c]) for r in range(rows) for c in range(cols)]
        for ax, example in zip(axes, examples):
            delta = _image(example.adversarial - example.original, shape)
            delta = delta.mean(2) if delta.ndim == 3 else delta
            shown = ax.imshow(delta, interpolation="nearest", cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"{example.true} → {example.predicted}", fontsize=9, pad=2)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[len(examples):]:
            ax.set_axis_off()
        left, right = axes[0].get_position().x0, axes[cols - 1].get_position().x1
        fig.text((left + right) / 2, 1 - 0.62 * head / height, name if examples else f"{name}: no examples",
                 ha="center", fontsize=10)
    fig.suptitle(title, fontsize=9)
    if shown is not None:
        bar = fig.add_axes([1 - 0.9 / width, 0.2, 0.15 / width, 0.55])
        colorbar = fig.colorbar(shown, cax=bar)
        colorbar.set_label("perturbation δ (blue −, red +)", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    return fig
