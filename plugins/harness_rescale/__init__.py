"""Built-in defense ``logit-scale``: divides the logits by T before any loss sees them.

RePU^4.5 logits are so large that float32 softmax saturates to exactly one-hot, and the input
gradient of the cross-entropy becomes exactly zero (gradient masking). Dividing by T ~ 1e5 brings
the logits back into softmax's working range; T = 1 leaves the model untouched. Predictions are
unchanged for any T > 0, so clean accuracy is too: logit-scale is a ``rescaler``.

``T = "auto"`` is resolved by ``fit`` on the clean test images: the smallest power of ten (1 to 1e12)
at which at least 99 % of the correctly classified images have a non-zero, finite input gradient
(``harness.kit.gradients.auto_temperature``). A model that needs no rescaling gets T = 1.
"""

from __future__ import annotations

import math

from harness import hookimpl
from harness.api import Defense

AUTO = "auto"


def _check(options: dict) -> None:
    value = options["T"]
    if value == AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"T: expected a positive temperature (1 = no rescaling) or \"{AUTO}\", got {value!r}")


def fit(model, options: dict, x, y) -> dict:
    """Resolve ``T = "auto"`` on the clean images (x, y); a numeric T is returned untouched."""
    if options["T"] != AUTO:
        return options
    from harness.kit.gradients import auto_temperature

    return {**options, "T": auto_temperature(model, x, y)}


def wrap(model, options: dict):
    from harness_rescale.scale import LogitScale

    if options["T"] == AUTO:
        raise ValueError('logit-scale: T = "auto" must be resolved by fit(model, options, x, y) before wrap')
    return LogitScale(model, options["T"])


@hookimpl
def harness_register_defenses(register):
    register(Defense(name="logit-scale", wrap=wrap, defaults={"T": 1.0}, check=_check, fit=fit, rescaler=True,
                     temperature_option="T",
                     keywords={"T": (AUTO,)},
                     description="divide the logits by T before the attack's loss (T = 1: no rescaling; "
                                 "\"auto\": smallest power of ten that un-masks the input gradient)"))
