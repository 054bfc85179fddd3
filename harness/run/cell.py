"""One cell of a suite on a trained model: the defense fitted and wrapped, the attack run by
:class:`harness.run.evaluator.Evaluator`, and the outcome: the cell's row (its job's template with
what was measured) and its per-image results. A failing attack or defense costs its own row, never
the run.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any, Callable

from harness.api import Outcome
from harness.errors import HarnessError, one_line
from harness.registry import Registry
from harness.results.table import robust_among_correct
from harness.run.evaluator import Evaluator
from harness.run.jobs import Job
from harness.suite.load import Suite
from harness.suite.validate import NO_DEFENSE

NAN = float("nan")


class CellEvaluation:
    """Turns jobs into outcomes for one suite on one device."""

    def __init__(self, suite: Suite, registry: Registry, device, progress,
                 obtain: Callable[[str, str, int], Any] | None = None) -> None:
        self.suite, self.registry, self.device, self.progress = suite, registry, device, progress
        self.obtain = obtain  # (dataset, model key, seed) -> trained module: a transfer attack's source

    def failed(self, job: Job, message: str, model_hash: str = "") -> Outcome:
        return Outcome(replace(job.template, device=str(self.device), status="error", error=message,
                               model_hash=model_hash))

    def cell(self, job: Job, module, model_hash: str, evaluator: Evaluator, defended: dict) -> Outcome:
        """The job's outcome; ``defended`` keeps each defense's (module, clean stats, T) for the
        model, so it is fitted, wrapped and measured once."""
        cell = job.cell
        try:
            if cell.defense not in defended:
                wrapped, temperature = self.wrap(module, cell.defense, evaluator)
                defended[cell.defense] = (wrapped, evaluator.clean(wrapped), temperature)
            wrapped, clean, temperature = defended[cell.defense]
            attack = self.suite.attacks[cell.attack]
            spec = self.registry.attacks.get(attack.plugin, attack.backend)
            start = time.perf_counter()
            robust, gap, longer = clean.correct, NAN, None
            if cell.eps > 0:
                options = self.transfer_options(cell, evaluator) if attack.transfer else dict(attack.options)
                seed_host_rngs(cell.seed)
                robust = evaluator.robust(wrapped, spec.build(wrapped, cell.eps, options), spec, cell.eps,
                                          cell.seed, clean.correct)
                longer = self.convergence_run(wrapped, spec, options, cell, evaluator, clean)
                if longer is not None:
                    gap = float(robust[: len(longer)].float().mean() - longer.float().mean())
            row = replace(job.template, device=str(self.device), n=evaluator.n,
                          clean_acc=float(clean.correct.float().mean()), robust_acc=float(robust.float().mean()),
                          robust_acc_cc=robust_among_correct(clean.correct, robust),
                          zero_grad_share=clean.zero_share, nonfinite_grad_share=clean.nonfinite_share,
                          grad_integrity=clean.integrity,
                          converged_gap=gap, seconds=time.perf_counter() - start, model_hash=model_hash,
                          T=temperature)
            return Outcome(row, examples(clean.correct, robust, longer))
        except Exception as exc:  # one failing attack or defense plugin costs one row
            self.progress.log(f"[red]cell {cell} failed: {one_line(exc)}[/red]")
            return self.failed(job, one_line(exc), model_hash)

    def convergence_run(self, wrapped, spec, options, cell, evaluator, clean):
        """Per-image robustness under the attack with twice its iterations, on the first
        ``convergence_images`` images (None when the attack has no steps option): the row's
        ``converged_gap`` and the paired convergence test (harness/results/diagnostics.py) compare it with
        the attack's own outcomes on those images."""
        images = self.suite.convergence_images
        if not spec.steps_option or images == 0 or spec.steps_option not in options:
            return None
        longer = {**options, spec.steps_option: options[spec.steps_option] * 2}
        seed_host_rngs(cell.seed)
        return evaluator.robust(wrapped, spec.build(wrapped, cell.eps, longer), spec, cell.eps, cell.seed,
                                clean.correct, limit=images)

    def transfer_options(self, cell, evaluator: Evaluator) -> dict[str, Any]:
        """A transfer attack's options with its source model (in its view) and its ``via`` attack resolved
        (harness.api.Attack.transfer)."""
        options = dict(self.suite.attacks[cell.attack].options)
        if self.obtain is None:
            raise HarnessError(f"attack {cell.attack}: a transfer attack needs the suite's other models; "
                               f"run it with `harness run`")
        source, _ = self.wrap(self.obtain(cell.dataset, options["source"], cell.seed), options["source_defense"],
                              evaluator)
        via = self.suite.attacks[options["via"]]
        via_spec = self.registry.attacks.get(via.plugin, via.backend)
        return {**options, "source": source,
                "via": lambda module, eps: via_spec.build(module, eps, dict(via.options))}

    def wrap(self, module, defense_key: str, evaluator: Evaluator):
        """(the module the attacks see, the logit temperature T it applies: 1.0 unless the defense
        declares a ``temperature_option``)."""
        if defense_key == NO_DEFENSE:
            return module, 1.0
        component = self.suite.defenses[defense_key]
        spec = self.registry.defenses.get(component.plugin)
        options = dict(component.options)
        if spec.fit is not None:  # data-dependent options, e.g. T = "auto", on the clean test images
            options = spec.fit(module, options, evaluator.x, evaluator.y)
        temperature = float(options[spec.temperature_option]) if spec.temperature_option else 1.0
        return spec.wrap(module, options).to(self.device).eval(), temperature


def examples(correct, robust, longer=None) -> dict[str, Any]:
    """Per-image outcomes as stored in OUT/examples: clean-correct, robust, and (when the convergence
    run ran) robust with twice the steps on the first images (``robust_2x``)."""
    import torch

    from harness.results.diagnostics import LONGER

    tensors = {"correct": correct.to("cpu", torch.uint8), "robust": robust.to("cpu", torch.uint8)}
    if longer is not None:
        tensors[LONGER] = longer.to("cpu", torch.uint8)
    return tensors


def seed_host_rngs(seed: int) -> None:
    """Seed Python's and numpy's global generators before an attack (ART draws its random starts from
    numpy), so a cell's result does not depend on what ran before it in the process."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
