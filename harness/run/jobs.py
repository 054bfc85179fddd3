"""A suite's cells resolved once, by the runner, into :class:`Job` values: the cell, its config hash
and its results row as far as it is known before the cell runs (names, the attack's kind and norm,
whether the defense is a pooled logit view, the test images). A worker fills in what it measures;
no later step looks the cell's records up again or recomputes its hash."""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.api import Group
from harness.errors import SuiteError
from harness.registry import Registry
from harness.results.table import Row
from harness.run.training import learner_summary
from harness.suite import sample
from harness.suite.load import Suite, config_hash
from harness.suite.validate import NO_DEFENSE, Cell

NAN = float("nan")


@dataclass(frozen=True, eq=False)
class Job:
    """One cell, resolved: ``template`` is its row with nothing measured yet (status ok, NaN
    accuracies, no device)."""

    cell: Cell
    config_hash: str
    template: Row

    def __str__(self) -> str:
        return str(self.cell)


def resolve_jobs(suite: Suite, registry: Registry) -> list[Job]:
    """Every cell of ``suite`` as a :class:`Job`, in the suite's order."""
    learners = {key: learner_summary(suite, key) for key in suite.models}
    jobs = [_job(suite, registry, cell, learners[cell.model]) for cell in suite.cells]
    first: dict[str, Job] = {}
    for job in jobs:
        other = first.setdefault(job.config_hash, job)
        if other is not job:
            raise _same_configuration(suite, other.cell, job.cell, job.config_hash)
    return jobs


def _same_configuration(suite: Suite, a: Cell, b: Cell, digest: str) -> SuiteError:
    """Two cells of the grid that are one configuration (identical tables under two names): the executor would
    get one cell twice and the table could not tell them apart."""
    tables = {"model": "models", "defense": "defenses", "attack": "attacks"}
    named = [f"{tables[part]}.{getattr(a, part)} and {tables[part]}.{getattr(b, part)}"
             for part in tables if getattr(a, part) != getattr(b, part)]
    return SuiteError(f"{suite.path}: {'; '.join(named) or 'grid'}: the same configuration under two names (cell "
                      f"hash {digest}: {a.model}/{a.defense}/{a.attack}/eps={a.eps:g} and {b.model}/{b.defense}/"
                      f"{b.attack}/eps={b.eps:g}); remove one of the tables or make them differ")


def _job(suite: Suite, registry: Registry, cell: Cell, learners: str) -> Job:
    attack = suite.attacks[cell.attack]
    spec = registry.attacks.get(attack.plugin, attack.backend)
    defense = suite.defenses.get(cell.defense)
    digest = config_hash(suite.cell_config(cell))
    row = Row(suite=suite.name, dataset=cell.dataset, model=cell.model, architecture=suite.models[cell.model].plugin,
              learners=learners, defense=cell.defense, defense_name=defense.plugin if defense else NO_DEFENSE,
              logit_view=defense is None or registry.defenses.get(defense.plugin).rescaler, attack=cell.attack,
              attack_name=attack.plugin, backend=attack.backend or "", attack_kind=spec.kind, norm=spec.norm,
              attack_params=json.dumps(attack.options, sort_keys=True), eps=cell.eps, seed=cell.seed,
              config_hash=digest, device="", test_images=sample.describe(suite.test_subset), n=0, clean_acc=NAN,
              robust_acc=NAN, robust_acc_cc=NAN, zero_grad_share=NAN, nonfinite_grad_share=NAN, converged_gap=NAN,
              seconds=0.0, status="ok", error="", model_hash="", T=1.0)
    return Job(cell, digest, row)


def group_jobs(jobs: list[Job]) -> list[Group]:
    """Jobs by trained model, datasets in order so each is loaded once."""
    groups: dict[tuple[str, str, int], list[Job]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(j.cell.dataset for j in jobs))}
    for job in sorted(jobs, key=lambda j: order[j.cell.dataset]):
        groups.setdefault((job.cell.dataset, job.cell.model, job.cell.seed), []).append(job)
    return [Group(*key, tuple(members)) for key, members in groups.items()]
