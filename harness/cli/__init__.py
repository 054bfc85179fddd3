"""The ``harness`` command: thin click commands over the core. Heavy imports happen inside commands."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from harness import __version__
from harness.cli.cache import cache
from harness.errors import HarnessError
from harness.kit.cli_options import Group, data_dir_option, data_root, device_option


class HarnessGroup(Group):
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


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Benchmark the adversarial robustness of neural networks, learners and defenses."""


@cli.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: runs/<suite name>). Rerunning continues it.")
@device_option
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--executor", default=None,
              help="Where cells run: the name of a registered executor (`harness plugins` lists them), e.g. ray "
                   "for a Ray cluster. Default: the executor that declares itself the default; with the "
                   "built-in plugins, local (this process).")
@click.option("--executor-option", "executor_options", multiple=True, metavar="KEY=VALUE",
              help="Executor option (repeatable), e.g. num_gpus=0.5, or address=HOST:PORT for a Ray cluster "
                   "(--executor ray); `harness plugins --json` lists each executor's options, docs/running.md "
                   "explains them.")
@click.option("--address", hidden=True, default=None)  # gone: it is the ray executor's option now
@click.option("--cache-dir", envvar="HARNESS_CACHE", default=None, type=click.Path(file_okay=False),
              help="Shared trained-model cache (default: $HARNESS_CACHE, else "
                   "$XDG_CACHE_HOME/robustness-harness/models, ~/.cache/... when XDG_CACHE_HOME is unset).")
@click.option("--no-cache", envvar="HARNESS_NO_CACHE", is_flag=True,
              help="Neither read nor fill the model cache (also HARNESS_NO_CACHE=1).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change the suite without editing it (repeatable): a dotted key and a TOML value, e.g. "
                   "models.bio.hidden=2000, 'grid.eps=[0.1,0.2]'; checked like the file (docs/suites.md).")
def run(suite_file: Path, out: Path | None, device: str, data_dir: str | None, quiet: bool, executor: str | None,
        executor_options: tuple[str, ...], address: str | None, cache_dir: str | None, no_cache: bool,
        overrides: tuple[str, ...]) -> None:
    """Run SUITE_FILE's grid and write OUT/results.csv, one row per cell.

    With --set, OUT defaults to runs/<suite name>-set-<6 hex digits of the overrides>, OUT/suite.toml
    holds the effective suite and OUT/run.json the overrides."""
    from harness.run.cache import ModelCache, cache_dir as resolve_cache_dir
    from harness.kit.device import resolve_device
    from harness.plugins import load_registry
    from harness.run.progress import RichProgress, SilentProgress
    from harness.run.executor import parse_executor_options, pick_executor
    from harness.run.runner import Runner, RunInterrupted
    from harness.results.rundir import RunDir, check_unlocked
    from harness.suite.load import load_suite

    if address is not None:
        raise HarnessError(f"--address: a cluster's address is an option of its executor now: --executor-option "
                           f"address={address} (e.g. with --executor ray)")
    registry = load_registry()
    suite = load_suite(suite_file, registry, overrides)
    chosen = pick_executor(registry, executor)
    options = parse_executor_options(chosen, executor_options)
    root = data_root(data_dir)
    torch_device = resolve_device(device)
    cache_root = resolve_cache_dir(cache_dir, no_cache)
    if out is None and overrides:  # another grid: not the directory of the suite as written
        from harness.suite.overrides import digest

        out = Path("runs") / f"{suite.name}-set-{digest(overrides)}"
    out = out or Path("runs") / suite.name
    check_unlocked(RunDir(out))  # before anything is printed: the error is then the only line
    click.echo(f"suite {suite.name}: {len(suite.cells)} cells, {len(suite.models)} model(s), "
               f"device {torch_device}, output {out}, executor {chosen.name}, "
               f"model cache {cache_root or 'off'}",
               err=True)
    try:
        with (SilentProgress() if quiet else RichProgress()) as progress:
            runner = Runner(suite, registry, out, root, torch_device, progress,
                            cache=ModelCache(cache_root) if cache_root else None, executor=chosen.name,
                            executor_options=options)
            frame = runner.run()
    except RunInterrupted as stop:
        command = ["harness", "run", str(suite_file), "--out", str(out)]
        command += (["--device", device] if device != "auto" else []) + (["--data-dir", data_dir] if data_dir else [])
        command += ["--quiet"] if quiet else []
        command += ["--executor", executor] if executor else []
        command += [arg for pair in executor_options for arg in ("--executor-option", pair)]
        command += (["--cache-dir", cache_dir] if cache_dir else []) + (["--no-cache"] if no_cache else [])
        command += [arg for pair in overrides for arg in ("--set", pair)]
        _interrupted(stop, command)
    _finish(frame, out)


@cli.command("eval")
@click.argument("model")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="The state dict of a factory MODEL, as a safetensors file (never pickle).")
@click.option("--arg", "factory_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for a factory MODEL (repeatable), the value as TOML: --arg hidden=100.")
@click.option("--dataset", default=None, help="Dataset whose test split is attacked (default: mnist).")
@click.option("--eps", required=True,
              help="Budgets on [0, 1] pixels in each attack's norm (L-inf for the built-in sets), "
                   "comma-separated, e.g. 0.1,0.15.")
@click.option("--attacks", default="standard", show_default=True,
              help="A set, standard or fast (the attacks whose plugins declare a preset of that name; the "
                   "built-in sets: docs/attacks.md; `harness plugins --json` lists every attack's presets), or "
                   "attack names (NAME@BACKEND where several backends have one), comma-separated.")
@click.option("--n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of test images (the first n).")
@click.option("--T", "temperature", default="auto", show_default=True,
              help="Logit temperature the attacks see (through the registered logit rescaler): one of its "
                   "keywords (with the built-in rescaler, auto: the smallest power of ten with working "
                   "gradients), a number (1 = logits as they are), or several, comma-separated.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Images per attack batch.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: runs/eval-<model name>). Rerunning continues it.")
@device_option
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress display.")
def eval_command(model: str, weights: str | None, factory_args: tuple[str, ...], dataset: str, eps: str,
                 attacks: str, n: int, temperature: str, batch_size: int, out: Path | None, device: str,
                 data_dir: str | None, quiet: bool) -> None:
    """Evaluate MODEL, trained anywhere, under a strong attack set, with the masking checks and the
    worst case over attacks; writes OUT/results.csv like `harness run`.

    MODEL is a factory package.module:build or path/to/file.py:build with --weights FILE.safetensors,
    a TorchScript file, or a NAME.safetensors the harness saved (next to its NAME.json). It must take
    [N, C, H, W] images in [0, 1] and return [N, classes] logits."""
    from harness.kit.device import resolve_device
    from harness.own_model import eval_runner
    from harness.suite.generate import DATASET, SUITE_PREFIX, eval_suite, logit_rescaler, model_table
    from harness.suite.overrides import value
    from harness.plugins import load_registry
    from harness.run.progress import RichProgress, SilentProgress
    from harness.results.rundir import RunDir, check_unlocked
    from harness.run.runner import RunInterrupted

    kwargs = {}
    for pair in factory_args:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise HarnessError(f"--arg {pair}: expected NAME=VALUE with a Python argument name, e.g. hidden=100")
        kwargs[key.strip()] = value(text.strip(), pair, "--arg")
    registry = load_registry()
    key, table = model_table(model, registry, weights, kwargs)
    dataset = dataset or DATASET
    raw = eval_suite(key, table, registry, dataset, eps, attacks, n, temperature, batch_size)
    root = data_root(data_dir)
    torch_device = resolve_device(device)
    out = out or Path("runs") / f"{SUITE_PREFIX}{key}"
    check_unlocked(RunDir(out))  # before anything is printed: the error is then the only line
    progress = SilentProgress() if quiet else RichProgress()
    runner = eval_runner(raw, registry, out, root, torch_device, progress)
    runner.preflight()  # the model loads and fits the dataset before anything is written (once: run() skips it)
    option = logit_rescaler(registry).temperature_option
    click.echo(f"eval {model} on {dataset} ({n} test images): attacks {', '.join(raw['attacks'])}, "
               f"T {', '.join(str(d[option]) for d in raw['defenses'].values())}, device {torch_device}, "
               f"output {out}", err=True)
    try:
        with progress:
            frame = runner.run()
    except RunInterrupted as stop:
        command = ["harness", "run", str(out / "suite.toml"), "--out", str(out)]
        command += (["--device", device] if device != "auto" else []) + (["--data-dir", data_dir] if data_dir else [])
        command += ["--quiet"] if quiet else []
        _interrupted(stop, command)
    _finish(frame, out, reasons=True)


def _interrupted(stop, command: list[str]) -> None:
    """Say how far an interrupted run got and the command that resumes it; exit 130."""
    click.echo(f"interrupted: {stop.done} of {stop.total} cells done ({stop.results}); "
               f"to resume, run: {shlex.join(command)}", err=True)
    sys.exit(130)


def _finish(frame, out: Path, reasons: bool = False) -> None:
    """Print the results table (and the per-model verdicts), where it is, and exit 1 if a cell failed."""
    _print_results(frame)
    if reasons:
        _print_reasons(frame)
    click.echo(f"results: {out / 'results.csv'}", err=True)
    failed = int((frame["status"] != "ok").sum())
    if failed:
        click.echo(f"{failed} cell(s) failed; see the error column. Rerun the same command to retry them.",
                   err=True)
        sys.exit(1)


def _print_reasons(frame) -> None:
    """The masking checks' verdict per model and defense (the reasons of flags are printed with the
    table), and which checks the grid could not evaluate."""
    from harness.results.diagnostics import skipped_union

    ok = frame[frame["status"] == "ok"]
    for (model, defense), rows in ok.groupby(["model", "defense"], sort=False):
        flagged = bool(rows["unreliable"].astype(bool).any())
        skipped = skipped_union(rows["checks_skipped"])
        verdict = "flagged by the masking checks (reasons above)" if flagged else "no masking check fired"
        click.echo(f"{model} / {defense}: {verdict}" + (f" (not checked: {skipped})" if skipped else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: one object per registered record, "
              "with its options' defaults and presets.")
def plugins(as_json: bool) -> None:
    """List every registered dataset, learner, model, attack, defense and executor, and who registered it."""
    from rich.console import Console
    from rich.table import Table

    from harness.plugins import load_commands, load_registry

    registry = load_registry()
    commands = load_commands(cli.commands)  # commands plugins add; here a clash is an error, not a warning
    if as_json:
        import json

        records = [{"kind": table.kind.singular, "name": e.obj.name, "key": e.key, "plugin": e.plugin,
                    "distribution": e.distribution, "description": e.obj.description,
                    "defaults": dict(e.obj.defaults), "optional": dict(getattr(e.obj, "optional", {})),
                    "presets": {k: dict(v) for k, v in
                                                                 getattr(e.obj, "presets", {}).items()}}
                   for table in registry.tables() for e in table.entries()]
        records += [{"kind": "command", "name": name, "key": name, "plugin": c.plugin, "distribution": c.distribution,
                     "description": c.command.get_short_help_str(limit=120), "defaults": {}, "optional": {},
                     "presets": {}}
                    for name, c in sorted(commands.items())]
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    table = Table("kind", "name", "plugin", "distribution", "description")
    for kind in registry.tables():
        for entry in kind.entries():
            table.add_row(kind.kind.singular, entry.key, entry.plugin, entry.distribution or "-",
                          entry.obj.description)
    for name, command in sorted(commands.items()):
        table.add_row("command", name, command.plugin, command.distribution or "-",
                      command.command.get_short_help_str(limit=120))
    Console(width=max(120, Console().width)).print(table)


@cli.group(cls=Group)
def data() -> None:
    """Fetch and verify datasets."""


@data.command("fetch")
@click.argument("name")
@data_dir_option
def data_fetch(name: str, data_dir: str | None) -> None:
    """Download (if missing) and verify dataset NAME."""
    from harness.plugins import load_registry

    dataset = load_registry().datasets.get(name)
    root = data_root(data_dir)
    files = dataset.fetch(root)
    click.echo(f"{name}: {len(files)} file(s) verified under {root}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--intervals", is_flag=True,
              help="One line per model x defense x attack x eps with 95 % intervals instead: Wilson over the "
                   "images for one seed; for several, mean, sd and the t-interval over seeds widened to at "
                   "least the Wilson interval of the mean over the images.")
def results(directory: Path, intervals: bool) -> None:
    """Print the results table stored in DIRECTORY (a run's --out), then the reasons behind every flag."""
    from harness.results.table import read_results

    frame = read_results(directory)
    if intervals:
        _print_intervals(frame)
    else:
        _print_results(frame)


def _print_intervals(frame) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from harness.results.table import flag_notes, seed_table

    lines = seed_table(frame)
    console = Console(width=max(160, Console().width))
    if lines.empty:
        console.print("no successful cells")
        return
    table = Table(title="accuracy (%) with 95 % intervals: Wilson over the n images for one seed; over "
                        "several seeds, mean ± sd and the t-interval over seeds (seed variation), widened to at "
                        "least the Wilson interval of the mean over the n images (the seeds share the images)")
    for column in ("dataset", "model", "defense", "T", "attack", "eps", "seeds", "n", "clean", "robust",
                   "robust 95 % interval", "flag"):
        table.add_column(column, justify="left" if column in ("dataset", "model", "defense", "attack", "flag")
                         else "right")

    def value(line, name):
        sd = line[f"{name}_sd"]
        return f"{line[name]:.1f}" + (f" ± {sd:.1f}" if sd == sd else "")

    for _, line in lines.iterrows():
        table.add_row(*map(escape, [line["dataset"], line["model"], line["defense"], line["T"], line["attack"],
                                    f"{line['eps']:g}", str(line["seeds"]), str(line["n"]),
                                    value(line, "clean_acc"), value(line, "robust_acc"),
                                    f"[{line['robust_acc_low']:.1f}, {line['robust_acc_high']:.1f}]",
                                    line["flag"]]))
    console.print(table)
    _print_notes(console, flag_notes(frame))


def _print_notes(console, notes: list[str]) -> None:
    """The distinct reasons behind the flags, one line each with the rows they concern."""
    if notes:
        console.print("flags (docs/diagnostics.md): meaningless = the attack did not see the model; "
                      "upper bound = the true robust accuracy is lower", highlight=False, markup=False)
    for note in notes:
        console.print(f"  {note}", highlight=False, markup=False, soft_wrap=True,
                      style="red" if note.startswith("meaningless") else "yellow")


def _print_results(frame) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.results.table import flag_notes, summary_table

    summary = summary_table(frame)
    if summary.empty:
        Console().print("no successful cells")
        return
    cells = [["" if isinstance(v, float) and v != v else f"{v:.1f}" if isinstance(v, float) else str(v)
              for v in line] for line in summary.itertuples(index=False)]
    widths = [max([len(str(c))] + [len(line[i]) for line in cells]) for i, c in enumerate(summary.columns)]
    # as wide as the widest cell needs: rich would otherwise cut names ("torchattac…") and numbers
    console = Console(width=max(160, Console().width, sum(w + 3 for w in widths) + 1))
    table = Table(title="robust accuracy (%) by epsilon, with clean accuracy and the share of images whose "
                        "input gradient is exactly zero (%)")
    text = ("dataset", "model", "defense", "attack", "backend", "flag")
    for column in summary.columns:
        table.add_column(str(column), justify="left" if column in text else "right", no_wrap=True)
    for line in cells:
        table.add_row(*line)
    console.print(table)
    _print_notes(console, flag_notes(frame))


cli.add_command(cache)


def main() -> None:
    cli(prog_name="harness")
