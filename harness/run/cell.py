"""One cell of a suite on a trained model: the defense fitted and wrapped, the attack run by
:class:`harness.run.evaluator.Evaluator`, and the outcome as a :class:`harness.results.table.Row` with its
per-image results. A failing attack or defense costs its own row, never the run.
"""

from __future__ import annotations

import json
import random
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.suite import sample
from harness.errors import HarnessError
from harness.run.evaluator import Evaluator
from harness.registry import Registry
from harness.results.table import Row, robust_among_correct
from harness.suite.load import NO_DEFENSE, Cell, Suite, config_hash
from harness.run.training import learner_summary

NAN = float("nan")


@dataclass
class Outcome:
    """One cell's row (the :class:`harness.results.table.Row` fields) and its per-image results, which
    worst-case rows, the convergence test and ``harness compare`` need: ``{"correct": uint8 tensor,
    "robust": uint8 tensor}`` plus ``"robust_2x"`` (the first images, twice the steps) when the
    convergence run ran; None on failure."""

    row: dict[str, Any]
    examples: dict[str, Any] | None = None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, HarnessError):
        return message
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {message}{where}"


class Evaluation:
    """Turns cells into outcomes for one suite; ``registry`` is called when needed."""

    def __init__(self, suite: Suite, registry: Callable[[], Registry], device, progress) -> None:
        self.suite, self._registry, self.device, self.progress = suite, registry, device, progress

    @property
    def registry(self) -> Registry:
        return self._registry()

    def failed(self, cell: Cell, message: str, model_hash: str = "") -> Outcome:
        return Outcome(asdict(self.base_row(cell, status="error", error=message, model_hash=model_hash)))

    def base_row(self, cell: Cell, **values) -> Row:
        attack = self.suite.attacks[cell.attack]
        spec = self.registry.attacks.get(attack.plugin, attack.backend)
        defense = self.suite.defenses.get(cell.defense)
        defaults = dict(n=0, clean_acc=NAN, robust_acc=NAN, robust_acc_cc=NAN, zero_grad_share=NAN,
                        nonfinite_grad_share=NAN, converged_gap=NAN, seconds=0.0, status="ok", error="",
                        model_hash="", T=1.0)
        defaults.update(values)
        return Row(suite=self.suite.name, dataset=cell.dataset, model=cell.model,
                   architecture=self.suite.models[cell.model].plugin,
                   learners=learner_summary(self.suite, cell.model), defense=cell.defense,
                   defense_name=defense.plugin if defense else NO_DEFENSE,
                   logit_view=defense is None or self.registry.defenses.get(defense.plugin).rescaler, attack=cell.attack,
                   attack_name=attack.plugin, backend=attack.backend or "", attack_kind=spec.kind,
                   norm=spec.norm, attack_params=json.dumps(attack.options, sort_keys=True), eps=cell.eps,
                   seed=cell.seed, config_hash=config_hash(self.suite.cell_config(cell)),
                   device=str(self.device), test_images=sample.describe(self.suite.test_subset), **defaults)

    def cell(self, cell: Cell, module, model_hash: str, evaluator: Evaluator, defended: dict) -> Outcome:
        """The cell's outcome; ``defended`` keeps each defense's (module, clean stats, T) for the
        model, so it is fitted, wrapped and measured once."""
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
                options = dict(attack.options)
                seed_host_rngs(cell.seed)
                robust = evaluator.robust(wrapped, spec.build(wrapped, cell.eps, options), spec, cell.eps,
                                          cell.seed, clean.correct)
                longer = self.convergence_run(wrapped, spec, options, cell, evaluator, clean)
                if longer is not None:
                    gap = float(robust[: len(longer)].float().mean() - longer.float().mean())
            row = self.base_row(cell, n=evaluator.n, clean_acc=float(clean.correct.float().mean()),
                                robust_acc=float(robust.float().mean()),
                                robust_acc_cc=robust_among_correct(clean.correct, robust),
                                zero_grad_share=clean.zero_share,
                                nonfinite_grad_share=clean.nonfinite_share, converged_gap=gap,
                                seconds=time.perf_counter() - start, model_hash=model_hash, T=temperature)
            return Outcome(asdict(row), examples(clean.correct, robust, longer))
        except Exception as exc:  # one failing attack or defense plugin costs one row
            self.progress.log(f"[red]cell {cell} failed: {one_line(exc)}[/red]")
            return self.failed(cell, one_line(exc), model_hash)

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
