"""Built-in figures of a trained model: ``harness show features|curve|perturbations`` (hidden units,
accuracy per epoch, adversarial examples) and ``harness diagnose gradients`` (zero input gradients
against the logit temperature T). They read a model file (``NAME.safetensors`` with its ``NAME.json``)
and reach the command line through ``harness_register_commands``, the hook a third-party plugin would
use. The drawing functions (:mod:`harness_figures.show`, :mod:`harness_figures.gallery`) are public:
the reporters plugin draws the report's figures with them.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness import hookimpl
from harness.kit.cli_options import data_dir_option, data_root, device_option


@click.group("show")
def show_group() -> None:
    """Plot a trained model (a NAME.safetensors file with its NAME.json) as PNG files."""


@show_group.command("features")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--param", default=None,
              help="2-D weight tensor to draw (default: the first whose width matches the input shape).")
@click.option("--units", type=click.IntRange(min=1), default=None,
              help="Number of random units to draw (default 25, or all if fewer).")
@click.option("--unit-ids", default=None, help="Units to draw, comma-separated: 3,17,42.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for choosing random units.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-features.png next to the model).")
@click.option("--cols", type=click.IntRange(min=1), default=None, help="Grid columns (default: about square).")
def show_features(model_file: Path, param: str | None, units: int | None, unit_ids: str | None, seed: int,
                  out: Path | None, cols: int | None) -> None:
    """Draw hidden units' weights of MODEL_FILE as a grid of input-shaped images."""
    from harness_figures.show import plot_features

    click.echo(plot_features(model_file, param, units, unit_ids, seed, out, cols))


@show_group.command("curve")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-curve.png next to the model).")
def show_curve(model_file: Path, out: Path | None) -> None:
    """Plot MODEL_FILE's per-epoch accuracy and learner statistics, stage by stage."""
    from harness_figures.show import plot_curve

    click.echo(plot_curve(model_file, out))


@show_group.command("perturbations")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--attack", "attack_name", required=True, help="Attack name (see `harness plugins`), e.g. pgd.")
@click.option("--backend", default=None, help="Backend of the attack, when several provide it.")
@click.option("--eps", type=float, required=True, help="Perturbation budget, in the attack's norm.")
@click.option("--T", "temperature", default="1", show_default=True,
              help="Logit temperature the attack sees (through the registered logit rescaler): a positive "
                   "number or auto.")
@click.option("--n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Successful adversarial examples to draw (at most).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Attack option overriding its default (repeatable), e.g. --option steps=40.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the attack's random start.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-perturbations.png next to the model).")
@data_dir_option
@device_option
def show_perturbations(model_file: Path, attack_name: str, backend: str | None, eps: float, temperature: str,
                       n: int, options: tuple[str, ...], seed: int, out: Path | None, data_dir: str | None,
                       device: str) -> None:
    """Draw successful adversarial examples of MODEL_FILE: original, perturbation, adversarial image.

    The first test images are attacked (through the logit rescaler at T) until n are fooled; when none is,
    the figure says so and the command still succeeds."""
    from harness.kit.device import resolve_device
    from harness_figures.gallery import perturbation_gallery

    result = perturbation_gallery(model_file, data_root(data_dir), attack_name, backend, eps, temperature, n,
                                  options, seed, out, resolve_device(device))
    click.echo(result.summary + (f"; drew {len(result.examples)}" if result.examples
                                 else "; no successful adversarial examples"), err=True)
    click.echo(result.png)


@click.group("diagnose")
def diagnose_group() -> None:
    """Check a trained model (a NAME.safetensors file with its NAME.json) for gradient masking."""


@diagnose_group.command("gradients")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--t-min", type=float, default=1.0, show_default=True, help="Smallest temperature T.")
@click.option("--t-max", type=float, default=1e7, show_default=True, help="Largest temperature T.")
@data_dir_option
@click.option("--n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of test images (the first n).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-gradients.png next to the model).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the curve as CSV.")
@device_option
def diagnose_gradients(model_file: Path, t_min: float, t_max: float, data_dir: str | None, n: int,
                       out: Path | None, csv_out: Path | None, device: str) -> None:
    """Share of test images whose input gradient is exactly zero, for every power of ten T in
    [t-min, t-max] (the loss sees logits / T), with the auto T marked; a table and a PNG."""
    from harness.kit.device import resolve_device
    from harness_figures.gallery import diagnose_gradients as diagnose_model, powers_of_ten

    powers_of_ten(t_min, t_max)  # a bad range fails before the model and data are loaded
    result = diagnose_model(model_file, data_root(data_dir), t_min, t_max, n, out, csv_out, resolve_device(device))
    for line in result.table():
        click.echo(line)
    click.echo(result.png)
    if result.csv is not None:
        click.echo(result.csv)


@diagnose_group.command("integrity")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--T", "temperature", type=float, default=1.0, show_default=True,
              help="Logit temperature the loss sees (logits / T), as an attack through that view.")
@data_dir_option
@click.option("--n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of test images (the first n).")
@device_option
def diagnose_integrity(model_file: Path, temperature: float, data_dir: str | None, n: int, device: str) -> None:
    """Whether the model's backward pass computes the gradient of its forward function: autograd's
    directional derivatives of the attack loss against finite differences, in float64 (a learner that
    replaces the backward, e.g. feedback alignment, misleads every gradient attack). Exit code 1 when
    flagged."""
    from harness.kit.device import resolve_device
    from harness_figures.gallery import load
    from harness.kit.integrity import gradient_integrity

    if not temperature > 0:
        raise click.BadParameter("expected a positive number", param_hint="--T")
    loaded = load(model_file, data_root(data_dir), n, resolve_device(device))
    result = gradient_integrity(loaded.module, loaded.x, loaded.y, temperature)
    click.echo(result.summary())
    if result.flagged:
        raise SystemExit(1)


@diagnose_group.command("geometry")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--T", "temperatures", type=float, multiple=True, default=(1.0, 1e3, 1e4, 1e5), show_default=True,
              help="Logit views (logits / T) whose input gradients are measured; repeat the option.")
@click.option("--layer", default="fc2", show_default=True,
              help="Submodule whose input is the hidden code (its share of active units).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV to write (default: RUN_DIR/geometry.csv).")
@click.option("--cache-dir", envvar="HARNESS_CACHE", default=None, type=click.Path(file_okay=False),
              help="Model cache to read weights from when the run keeps sidecars only (default: "
                   "$HARNESS_CACHE, else the user cache).")
@data_dir_option
@device_option
def diagnose_geometry(run_dir: Path, temperatures: tuple[float, ...], layer: str, out: Path | None,
                      cache_dir: str | None, data_dir: str | None, device: str) -> None:
    """What each model of a run looks like near the data, on the run's own test images: median logit
    margin, logit scale, linearised L-inf distance to the decision boundary, share of active hidden units,
    and per logit view T the share of zero input gradients and their median L1 norm
    (plugins/harness_figures/geometry.py). One CSV row per model and T."""
    from harness.kit.atomic import replace_atomically
    from harness.run.cache import cache_dir as resolve_cache_dir
    from harness.kit.device import resolve_device
    from harness.errors import HarnessError
    from harness_figures.geometry import run_geometry

    bad = [T for T in temperatures if not T > 0]
    if bad:
        raise click.BadParameter(f"expected positive temperatures, got {bad[0]:g}", param_hint="--T")
    if not (run_dir / "suite.toml").is_file():
        raise HarnessError(f"{run_dir}: not a run directory (no suite.toml); give the --out folder of a harness run")
    table = run_geometry(run_dir, data_root(data_dir), temperatures, resolve_cache_dir(cache_dir),
                         resolve_device(device), layer, progress=lambda line: click.echo(line, err=True))
    out = out or run_dir / "geometry.csv"
    replace_atomically(out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(str(out))


@hookimpl
def harness_register_commands(register):
    register(show_group)  # not named `show`: importing the submodule show would replace it
    register(diagnose_group)
