"""Figures of a trained model read from disk: its hidden units' weights drawn as images (Krotov &
Hopfield's Fig. 2) and its per-epoch training history. Only the safetensors file and the JSON
sidecar are read; matplotlib (Agg backend) is imported inside the plotting functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.registry import did_you_mean
from harness.run.modelstore import read_sidecar

SUFFIX = ".safetensors"
ACCURACY_KEYS = ("train_acc", "test_acc")
SKIP_STAT_KEYS = ("epoch", "lr")


# -- reading -------------------------------------------------------------------------------------
def model_path(path: Path | str) -> Path:
    """The model's .safetensors file, given with or without the suffix (or as its .json sidecar); a
    file of another format is an error, not a reason to look for NAME.suffix.safetensors."""
    given = path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(SUFFIX)
    elif path.suffix != SUFFIX:
        if path.is_file():  # another format: never answer about a file the user did not name
            raise HarnessError(f"{path}: not a harness model file; give the NAME{SUFFIX} file that `harness run` "
                               f"writes under OUT/models (with its NAME.json sidecar)")
        path = path.with_name(path.name + SUFFIX)
    if not path.is_file():
        raise HarnessError(f"{given}: no such model file" + (f" (nor {path})" if path != given else ""))
    return path


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise HarnessError(f"{path}: cannot read weights ({str(exc).splitlines()[0]})") from None


def read_tensor(path: Path, name: str):
    """One tensor as a float32 numpy array."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor(name).float().numpy()


def input_shape(sidecar: dict[str, Any], path: Path) -> tuple[int, ...]:
    shape = (sidecar.get("info") or {}).get("input_shape")
    if not shape:
        raise HarnessError(f"{path.with_suffix('.json')}: no input_shape recorded under 'info'")
    return tuple(int(n) for n in shape)


def choose_param(shapes: dict[str, tuple[int, ...]], shape: tuple[int, ...], param: str | None,
                 path: Path) -> str:
    """--param, checked; else the first 2-D tensor whose rows have one weight per input value."""
    width = math.prod(shape)
    if param is None:
        for name, dims in shapes.items():
            if len(dims) == 2 and dims[1] == width:
                return name
        raise HarnessError(f"{path}: no 2-D tensor of width {width} (input shape {shape}); "
                           f"name one with --param")
    if param not in shapes:
        raise HarnessError(f"{path}: no tensor '{param}'{did_you_mean(param, shapes)}")
    dims = shapes[param]
    if len(dims) != 2 or dims[1] != width:
        raise HarnessError(f"{path}: '{param}' has shape {list(dims)}; need [units, {width}] to draw its "
                           f"rows as {'x'.join(map(str, shape))} images")
    return param


def choose_units(total: int, units: int | None, unit_ids: str | None, seed: int) -> list[int]:
    """Explicit ids in the given order, else ``units`` (default 25) random ids, sorted."""
    if units is not None and unit_ids is not None:
        raise HarnessError("give --units or --unit-ids, not both")
    if unit_ids is not None:
        return parse_unit_ids(unit_ids, total)
    if units is not None and not 1 <= units <= total:
        raise HarnessError(f"--units {units}: the layer has {total} units")
    import numpy as np

    count = min(total, 25) if units is None else units
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=count, replace=False))


def parse_unit_ids(text: str, total: int) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise HarnessError(f"--unit-ids {text!r}: expected comma-separated integers, e.g. 3,17,42") from None
    if not ids:
        raise HarnessError("--unit-ids: no unit given")
    bad = [i for i in ids if not 0 <= i < total]
    if bad:
        raise HarnessError(f"--unit-ids: unit {bad[0]} out of range; the layer has {total} units (0-{total - 1})")
    return ids


def stage_summary(sidecar: dict[str, Any]) -> str:
    """'hebbian (fc1.weight, 30 ep, frozen) → backprop (fc2.weight, 5 ep)'."""
    parts = []
    for stage in sidecar.get("stages") or []:
        params = stage.get("params") or []
        what = ", ".join(params) if len(params) <= 2 else f"{len(params)} params"
        epochs = len(stage_history(stage))
        details = [what] + ([f"{epochs} ep"] if epochs else []) + (["frozen"] if stage.get("frozen") else [])
        parts.append(f"{stage.get('learner', '?')} ({', '.join(details)})")
    return " → ".join(parts) or "no stages recorded"


def stage_history(stage: Any) -> list[dict[str, Any]]:
    stats = stage.get("stats") if isinstance(stage, dict) else None
    history = stats.get("history") if isinstance(stats, dict) else None
    return [epoch for epoch in history if isinstance(epoch, dict)] if isinstance(history, list) else []


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def default_out(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}-{what}.png")


# -- drawing -------------------------------------------------------------------------------------
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: Path) -> Path:
    plt = pyplot()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, metadata={"Software": None})
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return out


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (no timestamp or software metadata: same figure, same bytes); closes it."""
    import io

    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def unit_image(row, shape: tuple[int, ...]) -> tuple[Any, dict[str, Any]]:
    """One unit's weights as an image and its imshow options: RGB scaled to [0, 1] for 3 channels,
    else a diverging map with symmetric limits at the unit's largest |w|."""
    if len(shape) == 3 and shape[0] == 3:
        image = row.reshape(shape).transpose(1, 2, 0)
        low, high = image.min(), image.max()
        return (image - low) / (high - low if high > low else 1.0), {}
    if len(shape) == 3 and shape[0] == 1:
        image = row.reshape(shape[1:])
    elif len(shape) == 2:
        image = row.reshape(shape)
    else:
        raise HarnessError(f"cannot draw inputs of shape {list(shape)} as images (need C,H,W with C 1 or 3)")
    limit = float(abs(image).max()) or 1.0
    return image, {"cmap": "bwr", "vmin": -limit, "vmax": limit}


def plot_features(model_file: Path | str, param: str | None = None, units: int | None = None,
                  unit_ids: str | None = None, seed: int = 0, out: Path | None = None,
                  cols: int | None = None) -> Path:
    """Draw a grid of hidden units' weight rows as input-shaped images; returns the PNG's path."""
    path = model_path(model_file)
    fig = features_figure(path, param, units, unit_ids, seed, cols)
    return save(fig, Path(out) if out else default_out(path, "features"))


def features_figure(model_file: Path | str, param: str | None = None, units: int | None = None,
                    unit_ids: str | None = None, seed: int = 0, cols: int | None = None):
    """The matplotlib figure of :func:`plot_features`, not yet saved."""
    path = model_path(model_file)
    sidecar = read_sidecar(path)
    shape = input_shape(sidecar, path)
    param = choose_param(tensor_shapes(path), shape, param, path)
    weights = read_tensor(path, param)
    ids = choose_units(len(weights), units, unit_ids, seed)
    cols = min(cols or math.ceil(math.sqrt(len(ids))), len(ids))
    rows = math.ceil(len(ids) / cols)
    plt = pyplot()
    cell, title = 1.15, 0.85  # inches per unit image, inches for the three-line title
    height = cell * rows + title
    fig, axes = plt.subplots(rows, cols, figsize=(max(cell * cols, 5.5), height), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, unit in zip(axes.flat, ids):
        image, options = unit_image(weights[unit], shape)
        ax.imshow(image, interpolation="nearest", **options)
        ax.set_title(f"#{unit}", fontsize=7, pad=2)
    rgb = len(shape) == 3 and shape[0] == 3
    scale = "RGB, each unit scaled to [0, 1]" if rgb else "blue −, red +; each unit scaled to ±max|w|"
    fig.suptitle(f"{path.stem}: {param}, {len(ids)} of {len(weights)} units\n"
                 f"{stage_summary(sidecar)}\n{scale}", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=1 - title / height, wspace=0.1, hspace=0.3)
    return fig


def split_stages(sidecar: dict[str, Any]):
    """(accuracy stages, statistics stages): (index, learner, history) of every stage with a history,
    split by whether its epochs record train_acc/test_acc."""
    accuracy, statistics = [], []
    for index, stage in enumerate(sidecar.get("stages") or []):
        history = stage_history(stage)
        if history:
            has_acc = any(key in epoch for epoch in history for key in ACCURACY_KEYS)
            (accuracy if has_acc else statistics).append((index, stage.get("learner", "?"), history))
    return accuracy, statistics


def stat_keys(statistics) -> list[str]:
    """Numeric per-epoch keys except epoch/lr, norm_dev and units_won first, in first-seen order."""
    keys: list[str] = []
    for _, _, history in statistics:
        for epoch in history:
            keys += [k for k, v in epoch.items() if numeric(v) and k not in SKIP_STAT_KEYS and k not in keys]
    first = [k for k in ("norm_dev", "units_won") if k in keys]
    return first + [k for k in keys if k not in first]


def plot_accuracy(ax, accuracy) -> None:
    """Train (dashed) and test (solid) accuracy per epoch, epochs counted across stages."""
    from matplotlib.ticker import MaxNLocator

    offset = 0
    for number, (index, learner, history) in enumerate(accuracy):
        color = f"C{number}"
        epochs = [offset + n + 1 for n in range(len(history))]
        for key, style, label in (("train_acc", "--", "train"), ("test_acc", "-", "test")):
            values = [100 * e[key] if numeric(e.get(key)) else float("nan") for e in history]
            ax.plot(epochs, values, style, marker="o", markersize=3, color=color,
                    label=f"stage {index} {learner}: {label}")
        if offset:
            ax.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=1)
        offset += len(history)
    ax.set_xlabel("epoch (counted across stages)" if len(accuracy) > 1 else "epoch")
    ax.set_ylabel("accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    last = [e["test_acc"] for e in accuracy[-1][2] if numeric(e.get("test_acc"))]
    ax.set_title("accuracy per epoch" + (f" (final test {100 * last[-1]:.1f}%)" if last else ""), fontsize=10)


def plot_statistic(ax, statistics, key: str) -> None:
    """One per-epoch statistic of the stages without accuracy (e.g. hebbian) on its own axes."""
    from matplotlib.ticker import MaxNLocator

    offset = 0
    for number, (index, learner, history) in enumerate(statistics):
        values = [e[key] if numeric(e.get(key)) else float("nan") for e in history]
        ax.plot([offset + n + 1 for n in range(len(history))], values, marker=".", markersize=4,
                color=f"C{number + 2}", label=f"stage {index} {learner}")
        if offset:
            ax.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=1)
        offset += len(history)
    finite = [v for _, _, h in statistics for e in h if numeric(v := e.get(key)) and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) > 100 * min(finite):
        ax.set_yscale("log")
    ax.set_title(key, fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(statistics) > 1 or key == stat_keys(statistics)[0]:
        ax.legend(fontsize=8)


def plot_curve(model_file: Path | str, out: Path | None = None) -> Path:
    """Accuracy over epochs for the stages that record it, and a panel per statistic of the stages
    that do not (a hebbian stage: norm_dev, units_won, ...); returns the PNG's path."""
    path = model_path(model_file)
    return save(curve_figure(path), Path(out) if out else default_out(path, "curve"))


def curve_figure(model_file: Path | str):
    """The matplotlib figure of :func:`plot_curve`, not yet saved."""
    path = model_path(model_file)
    sidecar = read_sidecar(path)
    accuracy, statistics = split_stages(sidecar)
    keys = stat_keys(statistics)
    if not accuracy and not keys:
        raise HarnessError(f"no per-epoch history recorded in {path.with_suffix('.json')}")
    cols = min(max(len(keys), 1), 3)
    stat_rows = math.ceil(len(keys) / cols)
    rows = (1 if accuracy else 0) + stat_rows
    plt = pyplot()
    fig = plt.figure(figsize=(max(4.0 * cols, 8.0), 3.6 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols)
    if accuracy:
        plot_accuracy(fig.add_subplot(grid[0, :]), accuracy)
    for number, key in enumerate(keys):
        row = rows - stat_rows + number // cols
        plot_statistic(fig.add_subplot(grid[row, number % cols]), statistics, key)
    fig.suptitle(f"{path.stem}\n{stage_summary(sidecar)}", fontsize=10)
    fig.tight_layout()
    return fig
