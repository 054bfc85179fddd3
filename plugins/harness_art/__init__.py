"""Built-in attacks through the Adversarial Robustness Toolbox (backend ``art``): ``fgsm`` and ``pgd``
(L-infinity), so torchattacks' results can be cross-checked against a second implementation.

Parameter names and defaults are ART's. ART is imported only when an attack is built.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack

FGSM_DEFAULTS = {"num_random_init": 0}
PGD_DEFAULTS = {"eps_step": 0.1, "max_iter": 100, "num_random_init": 0}


def _check_pgd(options: dict) -> None:
    if options["max_iter"] < 1:
        raise ValueError("max_iter: expected a positive integer")
    if options["eps_step"] <= 0:
        raise ValueError("eps_step: expected a positive step size")
    if options["num_random_init"] < 0:
        raise ValueError("num_random_init: expected an integer >= 0")


def _with_estimator(model, make_attack):
    """ART needs the input shape and class count, known only when the first batch arrives."""
    state = {}

    def attack(x, y):
        import numpy as np
        import torch
        from art.estimators.classification import PyTorchClassifier

        if "attack" not in state:
            with torch.no_grad():
                classes = model(x[:1]).shape[1]
            estimator = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                                          input_shape=tuple(x.shape[1:]), nb_classes=classes,
                                          clip_values=(0.0, 1.0),
                                          device_type="gpu" if x.is_cuda else "cpu")
            state["attack"] = make_attack(estimator, len(x))
        adv = state["attack"].generate(x=x.detach().cpu().numpy(), y=y.detach().cpu().numpy().astype(np.int64))
        return torch.from_numpy(adv).to(x.device, x.dtype)

    return attack


def fgsm(model, eps: float, options: dict):
    import numpy as np
    from art.attacks.evasion import FastGradientMethod

    return _with_estimator(model, lambda est, batch: FastGradientMethod(
        est, norm=np.inf, eps=eps, eps_step=eps, num_random_init=options["num_random_init"], batch_size=batch))


def pgd(model, eps: float, options: dict):
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent

    return _with_estimator(model, lambda est, batch: ProjectedGradientDescent(
        est, norm=np.inf, eps=eps, eps_step=options["eps_step"], max_iter=options["max_iter"],
        num_random_init=options["num_random_init"], batch_size=batch, verbose=False))


@hookimpl
def harness_register_attacks(register):
    register(Attack(name="fgsm", backend="art", build=fgsm, defaults=FGSM_DEFAULTS,
                    description="fast gradient sign method, L-inf, via ART"))
    register(Attack(name="pgd", backend="art", build=pgd, defaults=PGD_DEFAULTS, check=_check_pgd,
                    description="projected gradient descent, L-inf, via ART"))
