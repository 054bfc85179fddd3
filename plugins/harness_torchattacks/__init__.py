"""Built-in attacks through torchattacks (backend ``torchattacks``).

L-inf, eps-bounded: ``fgsm``, ``bim``, ``pgd``, ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab`` (torchattacks'
FAB only keeps adversarial examples inside the eps ball), ``square`` (gradient-free) and ``autoattack``
(the "standard" AutoAttack of Croce & Hein 2020 with the paper's iteration counts, composed from
torchattacks' own APGD, APGDT, FAB and Square with ``torchattacks.MultiAttack``).
L2: ``pgd-l2`` (eps-bounded), ``cw`` and ``deepfool`` (minimum-norm: they ignore eps).

Every option is the library's parameter of the same name with the library's default value, except
``autoattack``'s (the paper's counts; torchattacks' own ``AutoAttack`` runs APGD, APGD-T and FAB-T with
their 10-step defaults and draws its seed from the clock) and ``cw``'s ``c``/``kappa``, declared as
floats so a suite may set 0.5 (the library's defaults are the integers 1 and 0).

torchattacks is imported only when an attack is built.
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack
from harness.kit.checks import at_least, positive

# -- options (the library's defaults) -----------------------------------------------------------

BIM_DEFAULTS = {"alpha": 2 / 255, "steps": 10}
PGD_DEFAULTS = {"alpha": 2 / 255, "steps": 10, "random_start": True}
PGDL2_DEFAULTS = {"alpha": 0.2, "steps": 10, "random_start": True, "eps_for_division": 1e-10}
CW_DEFAULTS = {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01}
DEEPFOOL_DEFAULTS = {"steps": 50, "overshoot": 0.02}
APGD_DEFAULTS = {"steps": 10, "n_restarts": 1, "seed": 0, "eot_iter": 1, "rho": 0.75}
APGDT_DEFAULTS = {**APGD_DEFAULTS, "n_classes": 10}
FAB_DEFAULTS = {"steps": 10, "n_restarts": 1, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9, "seed": 0,
                "multi_targeted": False, "n_classes": 10}
SQUARE_DEFAULTS = {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8, "loss": "margin", "resc_schedule": True,
                   "seed": 0}
# Croce & Hein (2020), version "standard": APGD-CE and APGD-T (9 target classes) 100 iterations each,
# FAB-T (9 target classes) 100 iterations, Square 5000 queries, one restart each.
AUTOATTACK_DEFAULTS = {"steps": 100, "n_queries": 5000, "n_classes": 10, "seed": 0}

# The attack sets of `harness eval --attacks standard|fast` (docs/attacks.md): an attack belongs to
# a set by having a preset of that name, with the options the set runs it with.
PGD_STRONG = {"steps": 40, "alpha": 2 / 255, "random_start": True}  # the thesis's PGD-40
APGD_STRONG = {"steps": 100}                                         # AutoAttack's count


# -- checks --------------------------------------------------------------------------------------

def _fraction(options: dict, key: str) -> None:
    if not 0 < options[key] < 1:
        raise ValueError(f"{key}: expected a number strictly between 0 and 1, got {options[key]!r}")


def _check_bim(options: dict) -> None:
    positive(options, "alpha")
    at_least(options, 0, "steps")  # 0: torchattacks picks min(255 eps + 4, 1.25 * 255 eps) (Kurakin et al.)


def _check_pgd(options: dict) -> None:
    if options["steps"] < 1:
        raise ValueError("steps: expected a positive integer")
    if options["alpha"] <= 0:
        raise ValueError("alpha: expected a positive step size")


def _check_pgdl2(options: dict) -> None:
    _check_pgd(options)
    positive(options, "eps_for_division")


def _check_cw(options: dict) -> None:
    positive(options, "c", "lr")
    at_least(options, 1, "steps")
    if options["kappa"] < 0:
        raise ValueError(f"kappa: expected a confidence margin >= 0, got {options['kappa']!r}")


def _check_deepfool(options: dict) -> None:
    at_least(options, 1, "steps")
    if options["overshoot"] < 0:
        raise ValueError(f"overshoot: expected a number >= 0, got {options['overshoot']!r}")


def _check_apgd(options: dict) -> None:
    at_least(options, 1, "steps", "n_restarts", "eot_iter")
    _fraction(options, "rho")


def _check_apgdt(options: dict) -> None:
    _check_apgd(options)
    at_least(options, 2, "n_classes")


def _check_fab(options: dict) -> None:
    at_least(options, 1, "steps", "n_restarts")
    at_least(options, 2, "n_classes")
    positive(options, "alpha_max", "eta")
    _fraction(options, "beta")


def _check_square(options: dict) -> None:
    at_least(options, 1, "n_queries", "n_restarts")
    _fraction(options, "p_init")
    if options["loss"] not in ("margin", "ce"):
        raise ValueError(f"loss: expected 'margin' or 'ce', got {options['loss']!r}")


def _check_autoattack(options: dict) -> None:
    at_least(options, 1, "steps", "n_queries")
    at_least(options, 2, "n_classes")


# -- running -------------------------------------------------------------------------------------

class TorchattacksRun:
    """``attack(x, y) -> x_adv`` around a torchattacks attack (``.attack``): the result is detached and
    has x's device and dtype. APGD, APGD-T, FAB and Square reseed torch's global generator with their
    ``seed`` on every call (``reseeds``): that reseeding is kept inside the call, so it does not leak
    into whatever runs next. ``n_classes`` (if set) is checked against the model's output on the
    first batch: torchattacks would otherwise fail with an index error."""

    def __init__(self, attack, reseeds: bool = False, n_classes: int | None = None) -> None:
        self.attack, self.reseeds, self.n_classes = attack, reseeds, n_classes
        self._checked = n_classes is None

    def __call__(self, x, y):
        import contextlib

        import torch

        if not self._checked:
            with torch.no_grad():
                classes = self.attack.get_logits(x[:1]).shape[1]
            if self.n_classes > classes:
                raise ValueError(f"n_classes: {self.n_classes} is more than the model's {classes} classes")
            self._checked = True
        if self.reseeds:
            devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] \
                if x.is_cuda else []
            scope = torch.random.fork_rng(devices=devices)
        else:
            scope = contextlib.nullcontext()
        with scope:
            adv = self.attack(x, y)
        return adv.detach().to(device=x.device, dtype=x.dtype)


def fgsm(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.FGSM(model, eps=eps))


def bim(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.BIM(model, eps=eps, alpha=options["alpha"], steps=options["steps"]))


def pgd(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.PGD(model, eps=eps, alpha=options["alpha"], steps=options["steps"],
                                            random_start=options["random_start"]))


def pgd_l2(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.PGDL2(model, eps=eps, **options))


def cw(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.CW(model, **options))


def deepfool(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.DeepFool(model, **options))


def _apgd(loss: str):
    def build(model, eps: float, options: dict):
        import torchattacks

        return TorchattacksRun(torchattacks.APGD(model, norm="Linf", eps=eps, loss=loss, **options), reseeds=True)

    build.__name__ = f"apgd_{loss}"
    return build


def apgd_t(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.APGDT(model, norm="Linf", eps=eps, **options), reseeds=True,
                           n_classes=options["n_classes"])


def fab(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.FAB(model, norm="Linf", eps=eps, **options), reseeds=True,
                           n_classes=options["n_classes"])


def square(model, eps: float, options: dict):
    import torchattacks

    return TorchattacksRun(torchattacks.Square(model, norm="Linf", eps=eps, **options), reseeds=True)


def autoattack(model, eps: float, options: dict):
    """torchattacks.AutoAttack(version="standard")'s composition, with the paper's counts."""
    import torchattacks

    steps, seed, n_classes = options["steps"], options["seed"], options["n_classes"]
    common = {"norm": "Linf", "eps": eps, "seed": seed, "n_restarts": 1}
    attacks = [
        torchattacks.APGD(model, loss="ce", steps=steps, **common),
        torchattacks.APGDT(model, steps=steps, n_classes=n_classes, **common),
        torchattacks.FAB(model, multi_targeted=True, steps=steps, n_classes=n_classes, **common),
        torchattacks.Square(model, n_queries=options["n_queries"], **common),
    ]
    return TorchattacksRun(torchattacks.MultiAttack(attacks), reseeds=True, n_classes=n_classes)


@hookimpl
def harness_register_attacks(register):
    def attack(name, build, description, **fields):
        register(Attack(name=name, backend="torchattacks", build=build, description=description,
                        requires=("torchattacks",), **fields))

    attack("fgsm", fgsm, "fast gradient sign method, L-inf (Goodfellow et al. 2015)",
           presets={"standard": {}, "fast": {}})
    attack("bim", bim, "basic iterative method / I-FGSM, L-inf, no random start (Kurakin et al. 2017)",
           defaults=BIM_DEFAULTS, check=_check_bim, steps_option="steps")
    attack("pgd", pgd, "projected gradient descent, L-inf, random start (Madry et al. 2018)",
           defaults=PGD_DEFAULTS, check=_check_pgd, steps_option="steps",
           presets={"standard": PGD_STRONG, "fast": PGD_STRONG})
    attack("pgd-l2", pgd_l2, "projected gradient descent, L2, random start (Madry et al. 2018)",
           defaults=PGDL2_DEFAULTS, check=_check_pgdl2, norm="l2", steps_option="steps")
    attack("cw", cw, "Carlini-Wagner L2, minimum-norm, fixed c without binary search (Carlini & Wagner 2017)",
           defaults=CW_DEFAULTS, check=_check_cw, norm="l2", minimal=True, steps_option="steps")
    attack("deepfool", deepfool, "DeepFool, L2, minimum-norm (Moosavi-Dezfooli et al. 2016)",
           defaults=DEEPFOOL_DEFAULTS, check=_check_deepfool, norm="l2", minimal=True, steps_option="steps")
    attack("apgd-ce", _apgd("ce"), "Auto-PGD, cross-entropy loss, L-inf (Croce & Hein 2020)",
           defaults=APGD_DEFAULTS, check=_check_apgd, steps_option="steps", presets={"fast": APGD_STRONG})
    attack("apgd-dlr", _apgd("dlr"), "Auto-PGD, difference-of-logits-ratio loss, L-inf (Croce & Hein 2020)",
           defaults=APGD_DEFAULTS, check=_check_apgd, steps_option="steps",
           presets={"standard": APGD_STRONG, "fast": APGD_STRONG})
    attack("apgd-t", apgd_t, "Auto-PGD, targeted DLR loss, n_classes - 1 target classes, L-inf "
           "(Croce & Hein 2020)", defaults=APGDT_DEFAULTS, check=_check_apgdt, steps_option="steps",
           classes_option="n_classes")
    attack("fab", fab, "fast adaptive boundary attack, L-inf, kept only inside the eps ball; multi_targeted "
           "= FAB-T (Croce & Hein 2020)", defaults=FAB_DEFAULTS, check=_check_fab, steps_option="steps",
           classes_option="n_classes")
    attack("square", square, "Square attack, score-based random search, L-inf (Andriushchenko et al. 2020)",
           defaults=SQUARE_DEFAULTS, check=_check_square, gradient_free=True, steps_option="n_queries",
           presets={"standard": {"n_queries": 5000}, "fast": {"n_queries": 1000}})
    attack("autoattack", autoattack, "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square with the paper's "
           "counts, L-inf (Croce & Hein 2020)", defaults=AUTOATTACK_DEFAULTS, check=_check_autoattack,
           steps_option="steps", classes_option="n_classes", presets={"standard": {}})
