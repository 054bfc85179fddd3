"""Built-in attacks through torchattacks (backend ``torchattacks``): ``fgsm`` and ``pgd`` (L-infinity).

Defaults are torchattacks' own. torchattacks is imported only when an attack is built.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack

PGD_DEFAULTS = {"alpha": 2 / 255, "steps": 10, "random_start": True}


def _check_pgd(options: dict) -> None:
    if options["steps"] < 1:
        raise ValueError("steps: expected a positive integer")
    if options["alpha"] <= 0:
        raise ValueError("alpha: expected a positive step size")


def fgsm(model, eps: float, options: dict):
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)


def pgd(model, eps: float, options: dict):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=options["alpha"], steps=options["steps"],
                            random_start=options["random_start"])


@hookimpl
def harness_register_attacks(register):
    register(Attack(name="fgsm", backend="torchattacks", build=fgsm,
                    description="fast gradient sign method, L-inf (Goodfellow et al. 2015)"))
    register(Attack(name="pgd", backend="torchattacks", build=pgd, defaults=PGD_DEFAULTS, check=_check_pgd,
                    description="projected gradient descent, L-inf, random start (Madry et al. 2018)"))
