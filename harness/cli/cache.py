"""``harness cache ls|rm``: the shared trained-model cache (:mod:`harness.run.cache`)."""

from __future__ import annotations

import click

from harness.errors import HarnessError
from harness.kit.cli_options import Group

cache_dir_option = click.option(
    "--cache-dir", envvar="HARNESS_CACHE", default=None, type=click.Path(file_okay=False),
    help="Model cache (default: $HARNESS_CACHE, else $XDG_CACHE_HOME/robustness-harness/models, "
         "~/.cache/robustness-harness/models when XDG_CACHE_HOME is unset).")


def _open(cache_dir: str | None):
    from harness.run.cache import ModelCache, cache_dir as resolve

    return ModelCache(resolve(cache_dir))


@click.group(cls=Group)
def cache() -> None:
    """List or remove trained models in the cache shared by every run."""


@cache.command("ls")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array instead of the table: one object per cached model.")
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """Every cached model: hash, model key, dataset, learners, seed, size, created, last used."""
    from dataclasses import asdict

    store = _open(cache_dir)
    entries = store.entries()
    if as_json:
        import json

        click.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"no cached models in {store.root}", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("hash", "model", "dataset", "learners", "seed", "size", "created", "last used",
                  title=f"{len(entries)} model(s) in {store.root}, {_size(sum(e.size for e in entries))}")
    for e in entries:
        table.add_row(e.hash, e.model, e.dataset, e.learners, str(e.seed), _size(e.size), e.created, e.last_used)
    Console(width=max(140, Console().width)).print(table)


@cache.command("rm")
@click.argument("hashes", nargs=-1)
@click.option("--all", "remove_all", is_flag=True,
              help="Remove every cached model, and the state learners keep there (snapshots).")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Remove the models no run has used for DAYS days.")
@cache_dir_option
def cache_rm(hashes: tuple[str, ...], remove_all: bool, days: float | None, cache_dir: str | None) -> None:
    """Remove cached models by hash (or unique prefix), all of them (--all), or those no run has
    used for DAYS days (--older-than DAYS). Every hash is checked before anything is removed."""
    if sum((bool(hashes), remove_all, days is not None)) != 1:
        raise HarnessError("cache rm: give HASH... (see `harness cache ls`), --all, or --older-than DAYS; "
                           "exactly one of them")
    store = _open(cache_dir)
    if hashes:
        chosen = store.resolve(list(hashes))  # every hash is checked before anything is removed
    elif remove_all:
        chosen = [e.hash for e in store.entries()]
    else:
        chosen = store.unused_for(days)
    for model_hash in chosen:
        store.remove(model_hash)
    click.echo(f"removed {len(chosen)} model(s) from {store.root}", err=True)
    if remove_all and (store.root / "learner-state").is_dir():  # learners' snapshots (TrainContext.state_dir)
        import shutil

        shutil.rmtree(store.root / "learner-state")
        click.echo(f"removed the learners' saved state ({store.root / 'learner-state'})", err=True)


def _size(count: float) -> str:
    units = ("B", "KB", "MB", "GB")
    index = 0
    while count >= 1024 and index < len(units) - 1:
        count, index = count / 1024, index + 1
    return f"{count:.0f} B" if index == 0 else f"{count:.1f} {units[index]}"
