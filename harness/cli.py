"""The ``harness`` command: thin click commands over the core. Heavy imports happen inside commands."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from harness import __version__
from harness.cli_cache import cache
from harness.errors import HarnessError
from harness.paths import user_cache


class HarnessGroup(click.Group):
    """Turns every :class:`HarnessError` into one line on stderr and exit code 2, and adds the
    commands plugins register (``harness_register_commands``). Those are loaded only when a name is
    not a built-in command or when commands are listed (``--help``), so built-in commands never wait
    for them; a plugin that fails there costs a one-line warning on stderr, not the built-ins."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)

    def plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """The plugins' commands, loaded once per invocation (tests invoke ``cli`` many times, with
        different plugins)."""
        key = "harness.plugin_commands"
        if key not in ctx.meta:
            from harness.plugins import load_commands

            try:
                ctx.meta[key] = {name: entry.command for name, entry in load_commands(self.commands).items()}
            except Exception as exc:  # noqa: BLE001 - any plugin failure must leave the built-ins usable
                message = " ".join(str(exc).split()) or type(exc).__name__
                click.echo(f"warning: plugin commands not loaded: {message}", err=True)
                ctx.meta[key] = {}
        return ctx.meta[key]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self.plugin_commands(ctx).get(cmd_name)


def default_data_root() -> Path:
    return user_cache("data")


def data_root(option: str | None) -> Path:
    """--data-dir, else $HARNESS_DATA, else the user's cache dir (created on demand). A root the
    user named must exist: a typo should not silently download a second copy elsewhere."""
    for value, source in ((option, "--data-dir"), (os.environ.get("HARNESS_DATA"), "HARNESS_DATA")):
        if value:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise HarnessError(f"{source} {root}: data root does not exist; create it, or unset "
                                   f"{source} to use {default_data_root()}")
            return root
    root = default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
                               help="Data root (default: $HARNESS_DATA or ~/.cache/robustness-harness/data).")


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Benchmark the adversarial robustness of neural networks, learners and defenses."""


@cli.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: runs/<suite name>). Rerunning continues it.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--executor", default="local", show_default=True,
              help="Where cells run: local (this process), ray, or another registered executor.")
@click.option("--address", default=None, help="Ray cluster address (--executor ray; default: a local instance).")
@click.option("--executor-option", "executor_options", multiple=True, metavar="KEY=VALUE",
              help="Executor option (repeatable), e.g. num_gpus=0.5; see docs/running.md.")
@click.option("--cache-dir", envvar="HARNESS_CACHE", default=None, type=click.Path(file_okay=False),
              help="Shared trained-model cache (default: $HARNESS_CACHE or ~/.cache/robustness-harness/models).")
@click.option("--no-cache", envvar="HARNESS_NO_CACHE", is_flag=True,
              help="Neither read nor fill the model cache (also HARNESS_NO_CACHE=1).")
def run(suite_file: Path, out: Path | None, device: str, data_dir: str | None, quiet: bool, executor: str,
        address: str | None, executor_options: tuple[str, ...], cache_dir: str | None, no_cache: bool) -> None:
    """Run SUITE_FILE's grid and write OUT/results.csv, one row per cell."""
    from harness.cache import ModelCache, cache_dir as resolve_cache_dir
    from harness.device import resolve_device
    from harness.plugins import load_registry
    from harness.progress import RichProgress, SilentProgress
    from harness.runner import Runner, RunInterrupted, parse_executor_options
    from harness.suite import load_suite

    registry = load_registry()
    suite = load_suite(suite_file, registry)
    options = parse_executor_options(registry, executor, executor_options, address)
    root = data_root(data_dir)
    torch_device = resolve_device(device)
    cache_root = resolve_cache_dir(cache_dir, no_cache)
    out = out or Path("runs") / suite.name
    click.echo(f"suite {suite.name}: {len(suite.cells)} cells, {len(suite.models)} model(s), "
               f"device {torch_device}, output {out}, executor {executor}, model cache {cache_root or 'off'}",
               err=True)
    try:
        with (SilentProgress() if quiet else RichProgress()) as progress:
            runner = Runner(suite, registry, out, root, torch_device, progress,
                            cache=ModelCache(cache_root) if cache_root else None, executor=executor,
                            executor_options=options)
            frame = runner.run()
    except RunInterrupted as stop:
        command = ["harness", "run", str(suite_file), "--out", str(out)]
        command += (["--device", device] if device != "auto" else []) + (["--data-dir", data_dir] if data_dir else [])
        command += ["--quiet"] if quiet else []
        command += (["--executor", executor] if executor != "local" else []) + (["--address", address] if address else [])
        command += [arg for pair in executor_options for arg in ("--executor-option", pair)]
        command += (["--cache-dir", cache_dir] if cache_dir else []) + (["--no-cache"] if no_cache else [])
        click.echo(f"interrupted: {stop.done} of {stop.total} cells done ({stop.results}); "
                   f"to resume, run: {shlex.join(command)}", err=True)
        sys.exit(130)
    _print_results(frame)
    click.echo(f"results: {out / 'results.csv'}", err=True)
    failed = int((frame["status"] != "ok").sum())
    if failed:
        click.echo(f"{failed} cell(s) failed; see the error column. Rerun the same command to retry them.",
                   err=True)
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: one object per registered record, "
              "with its options' defaults and presets.")
def plugins(as_json: bool) -> None:
    """List every registered dataset, learner, model, attack, defense and executor, and who registered it."""
    from rich.console import Console
    from rich.table import Table

    from harness.plugins import load_commands, load_registry
    from harness.registry import SINGULAR

    registry = load_registry()
    commands = load_commands(cli.commands)  # commands plugins add; here a clash is an error, not a warning
    if as_json:
        import json

        records = [{"kind": SINGULAR[kind], "name": e.obj.name, "key": e.key, "plugin": e.plugin,
                    "distribution": e.distribution, "description": e.obj.description,
                    "defaults": dict(e.obj.defaults), "presets": {k: dict(v) for k, v in
                                                                 getattr(e.obj, "presets", {}).items()}}
                   for kind in SINGULAR for e in registry.entries(kind)]
        records += [{"kind": "command", "name": name, "key": name, "plugin": c.plugin, "distribution": c.distribution,
                     "description": c.command.get_short_help_str(limit=120), "defaults": {}, "presets": {}}
                    for name, c in sorted(commands.items())]
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    table = Table("kind", "name", "plugin", "distribution", "description")
    for kind in SINGULAR:
        for entry in registry.entries(kind):
            table.add_row(SINGULAR[kind], entry.key, entry.plugin, entry.distribution or "-",
                          entry.obj.description)
    for name, command in sorted(commands.items()):
        table.add_row("command", name, command.plugin, command.distribution or "-",
                      command.command.get_short_help_str(limit=120))
    Console(width=max(120, Console().width)).print(table)


@cli.group()
def data() -> None:
    """Fetch and verify datasets."""


@data.command("fetch")
@click.argument("name")
@data_dir_option
def data_fetch(name: str, data_dir: str | None) -> None:
    """Download (if missing) and verify dataset NAME."""
    from harness.plugins import load_registry

    dataset = load_registry().get("datasets", name)
    root = data_root(data_dir)
    files = dataset.fetch(root)
    click.echo(f"{name}: {len(files)} file(s) verified under {root}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
def results(directory: Path) -> None:
    """Print the results table stored in DIRECTORY (a run's --out)."""
    from harness.results import read_results

    _print_results(read_results(directory))


@cli.group()
def show() -> None:
    """Plot a trained model (a NAME.safetensors file with its NAME.json) as PNG files."""


@show.command("features")
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
    from harness.show import plot_features

    click.echo(plot_features(model_file, param, units, unit_ids, seed, out, cols))


@show.command("curve")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-curve.png next to the model).")
def show_curve(model_file: Path, out: Path | None) -> None:
    """Plot MODEL_FILE's per-epoch accuracy and learner statistics, stage by stage."""
    from harness.show import plot_curve

    click.echo(plot_curve(model_file, out))


@show.command("perturbations")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--attack", "attack_name", required=True, help="Attack name (see `harness plugins`), e.g. pgd.")
@click.option("--backend", default=None, help="Backend of the attack, when several provide it.")
@click.option("--eps", type=float, required=True, help="Perturbation budget, in the attack's norm.")
@click.option("--T", "temperature", default="1", show_default=True,
              help="Logit temperature the attack sees (logit-scale): a positive number or auto.")
@click.option("--n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Successful adversarial examples to draw (at most).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Attack option overriding its default (repeatable), e.g. --option steps=40.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the attack's random start.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: <model>-perturbations.png next to the model).")
@data_dir_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def show_perturbations(model_file: Path, attack_name: str, backend: str | None, eps: float, temperature: str,
                       n: int, options: tuple[str, ...], seed: int, out: Path | None, data_dir: str | None,
                       device: str) -> None:
    """Draw successful adversarial examples of MODEL_FILE: original, perturbation, adversarial image.

    The first test images are attacked (through logit-scale T) until n are fooled; when none is,
    the figure says so and the command still succeeds."""
    from harness.device import resolve_device
    from harness.gallery import perturbation_gallery

    result = perturbation_gallery(model_file, data_root(data_dir), attack_name, backend, eps, temperature, n,
                                  options, seed, out, resolve_device(device))
    click.echo(result.summary + (f"; drew {len(result.examples)}" if result.examples
                                 else "; no successful adversarial examples"), err=True)
    click.echo(result.png)


@cli.group()
def diagnose() -> None:
    """Check a trained model (a NAME.safetensors file with its NAME.json) for gradient masking."""


@diagnose.command("gradients")
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
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def diagnose_gradients(model_file: Path, t_min: float, t_max: float, data_dir: str | None, n: int,
                       out: Path | None, csv_out: Path | None, device: str) -> None:
    """Share of test images whose input gradient is exactly zero, for every power of ten T in
    [t-min, t-max] (the loss sees logits / T), with the auto T marked; a table and a PNG."""
    from harness.device import resolve_device
    from harness.gallery import diagnose_gradients as diagnose_model, powers_of_ten

    powers_of_ten(t_min, t_max)  # a bad range fails before the model and data are loaded
    result = diagnose_model(model_file, data_root(data_dir), t_min, t_max, n, out, csv_out, resolve_device(device))
    for line in result.table():
        click.echo(line)
    click.echo(result.png)
    if result.csv is not None:
        click.echo(result.csv)


def _print_results(frame) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.results import summary_table

    summary = summary_table(frame)
    console = Console(width=max(160, Console().width))
    if summary.empty:
        console.print("no successful cells")
        return
    table = Table(title="robust accuracy (%) by epsilon, with clean accuracy and the share of images whose "
                        "input gradient is exactly zero (%)")
    for column in summary.columns:
        table.add_column(str(column), justify="right" if column not in ("dataset", "model", "defense", "attack",
                                                                        "backend", "flag") else "left")
    for _, line in summary.iterrows():
        table.add_row(*("" if isinstance(v, float) and v != v else f"{v:.1f}" if isinstance(v, float)
                        else str(v) for column, v in line.items()))
    console.print(table)


cli.add_command(cache)


def main() -> None:
    cli(prog_name="harness")


if __name__ == "__main__":
    main()
