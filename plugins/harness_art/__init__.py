"""Built-in attacks through the Adversarial Robustness Toolbox (backend ``art``), so torchattacks'
results can be cross-checked against a second implementation.

L-inf, eps-bounded: ``fgsm``, ``pgd``, ``square`` (gradient-free) and ``autoattack`` (ART's AutoAttack
with its own attack list: APGD-CE, APGD-DLR, DeepFool, Square). Minimum-norm, L2 (eps ignored):
``cw`` (CarliniL2Method), ``deepfool`` and ``hopskipjump`` (decision-based, gradient-free).

Parameter names and defaults are ART's. ART works on numpy arrays: each attack wraps the model in a
``PyTorchClassifier`` on the model's device when the first batch arrives (see ``_estimator``). ART is
imported only when an attack is built.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack
from harness.kit.checks import at_least, positive

# -- options (ART's defaults) --------------------------------------------------------------------

FGSM_DEFAULTS = {"num_random_init": 0}
PGD_DEFAULTS = {"eps_step": 0.1, "max_iter": 100, "num_random_init": 0, "decay": None}
CW_DEFAULTS = {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 10, "max_iter": 10,
               "initial_const": 0.01, "max_halving": 5, "max_doubling": 5}
DEEPFOOL_DEFAULTS = {"max_iter": 100, "epsilon": 1e-6, "nb_grads": 10}
HOPSKIPJUMP_DEFAULTS = {"max_iter": 50, "max_eval": 10000, "init_eval": 100, "init_size": 100}
SQUARE_DEFAULTS = {"max_iter": 100, "p_init": 0.8, "nb_restarts": 1}
# AutoAttack(eps_step, targeted) are its constructor's; the other four are the budgets its default
# attack list gives APGD-CE/APGD-DLR (max_iter, nb_random_init) and Square (max_iter, nb_restarts).
AUTOATTACK_DEFAULTS = {"eps_step": 0.1, "targeted": False, "max_iter": 100, "nb_random_init": 5,
                       "square_max_iter": 5000, "square_nb_restarts": 5}


# -- checks --------------------------------------------------------------------------------------

def _check_fgsm(options: dict) -> None:
    at_least(options, 0, "num_random_init")


def _check_pgd(options: dict) -> None:
    if options["max_iter"] < 1:
        raise ValueError("max_iter: expected a positive integer")
    if options["eps_step"] <= 0:
        raise ValueError("eps_step: expected a positive step size")
    if options["num_random_init"] < 0:
        raise ValueError("num_random_init: expected an integer >= 0")
    decay = options["decay"]
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0):
        raise ValueError(f"decay: expected a momentum factor >= 0 (default: none), got {decay!r}")


def _check_cw(options: dict) -> None:
    positive(options, "learning_rate", "initial_const")
    at_least(options, 1, "binary_search_steps", "max_iter")
    at_least(options, 0, "max_halving", "max_doubling")
    if options["confidence"] < 0:
        raise ValueError(f"confidence: expected a number >= 0, got {options['confidence']!r}")


def _check_deepfool(options: dict) -> None:
    at_least(options, 1, "max_iter", "nb_grads")
    if options["epsilon"] < 0:
        raise ValueError(f"epsilon: expected an overshoot >= 0, got {options['epsilon']!r}")


def _check_hopskipjump(options: dict) -> None:
    at_least(options, 1, "max_iter", "max_eval", "init_eval", "init_size")
    if options["init_eval"] > options["max_eval"]:
        raise ValueError("init_eval: expected at most max_eval")


def _check_square(options: dict) -> None:
    at_least(options, 1, "max_iter", "nb_restarts")
    if not 0 < options["p_init"] < 1:
        raise ValueError(f"p_init: expected a number strictly between 0 and 1, got {options['p_init']!r}")


def _check_autoattack(options: dict) -> None:
    positive(options, "eps_step")
    at_least(options, 1, "max_iter", "nb_random_init", "square_max_iter", "square_nb_restarts")


# -- running -------------------------------------------------------------------------------------

def _estimator(model, x):
    import torch
    from art.estimators.classification import PyTorchClassifier

    from harness_art._cast import CastInput

    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    return PyTorchClassifier(model=CastInput(model), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if x.is_cuda else "cpu")


def _with_estimator(model, make_attack, eps: float | None = None, keep_misclassified: bool = False):
    """ART needs the input shape and class count, known only when the first batch arrives.

    ``eps`` (L-inf attacks): project the result onto the eps ball, because ART's AutoAttack accepts
    perturbations up to eps / (1 - 1e-4). ``keep_misclassified``: return the clean image where the
    model already errs (ART's DeepFool ignores ``y`` and would push such images to another class,
    possibly the right one; untargeted HopSkipJump does the same)."""
    state = {}

    def attack(x, y):
        import numpy as np
        import torch

        if "attack" not in state:
            state["attack"] = make_attack(_estimator(model, x), len(x))
        adv = state["attack"].generate(x=x.detach().cpu().numpy(), y=y.detach().cpu().numpy().astype(np.int64))
        adv = torch.from_numpy(adv).to(device=x.device, dtype=x.dtype)
        if eps is not None:
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)
        if keep_misclassified:
            with torch.no_grad():
                wrong = model(x).argmax(1) != y
            adv[wrong] = x[wrong]
        return adv

    attack.make_attack = make_attack  # lets tests inspect the ART attack without running it
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
        num_random_init=options["num_random_init"], decay=options["decay"], batch_size=batch, verbose=False))


def cw(model, eps: float, options: dict):
    from art.attacks.evasion import CarliniL2Method

    return _with_estimator(model, lambda est, batch: CarliniL2Method(
        est, batch_size=batch, verbose=False, **options))


def deepfool(model, eps: float, options: dict):
    from art.attacks.evasion import DeepFool

    return _with_estimator(model, lambda est, batch: DeepFool(est, batch_size=batch, verbose=False, **options),
                           keep_misclassified=True)


def hopskipjump(model, eps: float, options: dict):
    from art.attacks.evasion import HopSkipJump

    return _with_estimator(model, lambda est, batch: HopSkipJump(est, norm=2, verbose=False, **options),
                           keep_misclassified=True)


def square(model, eps: float, options: dict):
    import numpy as np
    from art.attacks.evasion import SquareAttack

    return _with_estimator(model, lambda est, batch: SquareAttack(
        est, norm=np.inf, eps=eps, batch_size=batch, verbose=False, **options), eps=eps)


def autoattack(model, eps: float, options: dict):
    import numpy as np
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack

    def make(est, batch):
        attack = AutoAttack(est, norm=np.inf, eps=eps, eps_step=options["eps_step"], batch_size=batch,
                            targeted=options["targeted"])
        for inner in attack.attacks:  # ART's own list; only the budgets the options name change
            if isinstance(inner, AutoProjectedGradientDescent):
                inner.set_params(max_iter=options["max_iter"], nb_random_init=options["nb_random_init"])
            elif isinstance(inner, SquareAttack):
                inner.set_params(max_iter=options["square_max_iter"], nb_restarts=options["square_nb_restarts"])
            inner.set_params(verbose=False)
        return attack

    return _with_estimator(model, make, eps=eps)


@hookimpl
def harness_register_attacks(register):
    def attack(name, build, description, **fields):
        register(Attack(name=name, backend="art", build=build, description=description,
                        requires=("adversarial-robustness-toolbox",), **fields))

    attack("fgsm", fgsm, "fast gradient sign method, L-inf, via ART (Goodfellow et al. 2015)",
           defaults=FGSM_DEFAULTS, check=_check_fgsm)
    attack("pgd", pgd, "projected gradient descent, L-inf, via ART (Madry et al. 2018)",
           defaults=PGD_DEFAULTS, check=_check_pgd, steps_option="max_iter")
    attack("cw", cw, "Carlini-Wagner L2 with binary search over c, minimum-norm, via ART "
           "(Carlini & Wagner 2017)", defaults=CW_DEFAULTS, check=_check_cw, norm="l2", minimal=True,
           steps_option="max_iter")
    attack("deepfool", deepfool, "DeepFool, L2, minimum-norm, via ART (Moosavi-Dezfooli et al. 2016)",
           defaults=DEEPFOOL_DEFAULTS, check=_check_deepfool, norm="l2", minimal=True, steps_option="max_iter")
    attack("hopskipjump", hopskipjump, "HopSkipJump, decision-based, L2, minimum-norm, via ART "
           "(Chen, Jordan & Wainwright 2020)", defaults=HOPSKIPJUMP_DEFAULTS, check=_check_hopskipjump,
           norm="l2", minimal=True, gradient_free=True, steps_option="max_iter")
    attack("square", square, "Square attack, score-based random search, L-inf, via ART "
           "(Andriushchenko et al. 2020)", defaults=SQUARE_DEFAULTS, check=_check_square, gradient_free=True,
           steps_option="max_iter")
    attack("autoattack", autoattack, "AutoAttack as ART composes it: APGD-CE, APGD-DLR, DeepFool, Square, L-inf "
           "(Croce & Hein 2020)", defaults=AUTOATTACK_DEFAULTS, check=_check_autoattack, steps_option="max_iter")
