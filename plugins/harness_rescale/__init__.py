"""Built-in defense ``logit-scale``: divides the logits by T before any loss sees them.

RePU^4.5 logits are so large that float32 softmax saturates to exactly one-hot, and the input
gradient of the cross-entropy becomes exactly zero (gradient masking). Dividing by T ~ 1e5 brings
the logits back into softmax's working range; T = 1 leaves the model untouched. Predictions are
unchanged for any T > 0, so clean accuracy is too.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Defense


def _check(options: dict) -> None:
    if options["T"] <= 0:
        raise ValueError("T: expected a positive temperature (1 = no rescaling)")


def wrap(model, options: dict):
    from harness_rescale.scale import LogitScale

    return LogitScale(model, options["T"])


@hookimpl
def harness_register_defenses(register):
    register(Defense(name="logit-scale", wrap=wrap, defaults={"T": 1.0}, check=_check,
                     description="divide the logits by T before the attack's loss (T = 1: no rescaling)"))
