"""Built-in baseline ``noise`` (backend ``torch``): random perturbations of the full budget.

Not an attack: the yardstick an attack must beat. If random noise of the same eps lowers accuracy
more than a gradient attack does, the attack is not seeing the model's gradient (Carlini et al. 2019,
"On Evaluating Adversarial Robustness"). Written here because it is one line of torch, not an
algorithm a library provides.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack

DEFAULTS = {"samples": 1}


def _check(options: dict) -> None:
    if options["samples"] < 1:
        raise ValueError("samples: expected a positive number of random draws per image")


def _build(norm: str):
    def build(model, eps: float, options: dict):
        import torch

        def attack(x, y):
            """Per image, the first of ``samples`` random draws that fools the model (else the last)."""
            adv = None
            fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            for _ in range(options["samples"]):
                if norm == "linf":  # a random corner of the eps-box: the largest L-inf noise
                    delta = eps * (torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1)
                else:               # a random direction of L2 length eps
                    delta = torch.randn_like(x)
                    delta *= eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                candidate = (x + delta).clamp(0, 1)
                with torch.no_grad():
                    wrong = model(candidate).argmax(1) != y
                if adv is None:
                    adv = candidate
                else:
                    adv[~fooled] = candidate[~fooled]
                fooled |= wrong
            return adv
        return attack
    return build


@hookimpl
def harness_register_attacks(register):
    # in the attack sets of `harness eval` (docs/attacks.md), with 10 draws per image
    register(Attack(name="noise", backend="torch", build=_build("linf"), defaults=DEFAULTS, check=_check,
                    baseline=True, presets={"standard": {"samples": 10}, "fast": {"samples": 10}},
                    description="random sign noise at the L-inf budget (baseline)"))
    register(Attack(name="noise-l2", backend="torch", build=_build("l2"), defaults=DEFAULTS, check=_check,
                    norm="l2", baseline=True, description="random direction of L2 length eps (baseline)"))
