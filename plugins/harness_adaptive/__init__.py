"""Built-in attacks that adapt to what the Hebbian net is (backend ``torch``): ``representation``, an
attack on a hidden layer's code, and ``transfer``, adversarial examples made on another model of the
suite and scored on the cell's (see the end of this docstring).

``representation``:

Within the eps-ball (L-inf), PGD pushes the code a layer receives (by default ``fc2``'s input: the
Hebbian layer's RePU output that the head reads) away from the clean image's code; the head's decision
on the result is what is scored. It asks whether the *representation* is robust, which a logit-space
attack cannot separate from the head: a Hebbian layer learned without labels could be stable while a
small head on top is not, or the reverse. Per image the first iterate that changes the decision is
kept (else the last).

Written here because the libraries' attacks maximise a classification loss on the output;
torchattacks has no feature-space attack, and ART's ``FeatureAdversaries`` moves an image's features
*towards a guide image's*, a different objective. The loop itself is the PGD of Madry et al. (2018):
random start in the ball, signed-gradient steps of ``alpha``, projection back.

``loss = "cosine"`` (default) maximises 1 - cos(code, clean code): scale-free, which matters for
RePU^4.5, whose codes span many orders of magnitude (a Euclidean distance would follow the one or two
strongest units). ``loss = "l2"`` maximises the Euclidean distance instead.

``transfer`` (harness.api.Attack.transfer): ``source`` names a model of the suite (same dataset and
seed as the cell), ``source_defense`` the view of it the examples are made through ("none" or a defense
key, e.g. a logit rescaler), ``via`` the suite's attack that makes them (e.g. "autoattack"). The core
resolves the three when the suite loads and before the cell runs; this attack only runs ``via`` on the
source. A transfer attack that beats the white-box attacks on the target is a classic sign that the
target's gradients mislead (Athalye et al. 2018); one whose source is the cell's own model and view
makes exactly the white-box attack's examples (tests/plugins/attacks/test_transfer.py).
"""

from __future__ import annotations

from harness import hookimpl
from harness.api import Attack

DEFAULTS = {"layer": "fc2", "steps": 40, "alpha": 2 / 255, "random_start": True, "loss": "cosine", "seed": 0}
LOSSES = ("cosine", "l2")


def _check(options: dict) -> None:
    from harness.kit.checks import at_least, one_of, positive

    at_least(options, 1, "steps")
    positive(options, "alpha")
    one_of(options, "loss", LOSSES)
    if not options["layer"]:
        raise ValueError("layer: expected the name of a submodule whose input is the code to attack (e.g. \"fc2\")")


def _submodule(model, layer: str):
    """The one submodule named ``layer`` or ending in ``.layer`` (the model may sit inside a defense)."""
    from harness.errors import HarnessError

    found = [(name, module) for name, module in model.named_modules() if name == layer or name.endswith("." + layer)]
    if len(found) != 1:
        names = ", ".join(name for name, _ in model.named_modules() if name) or "none"
        what = "no submodule" if not found else f"{len(found)} submodules"
        raise HarnessError(f"representation attack: {what} named '{layer}' in the model (its submodules: {names}); "
                           f"set the attack's layer option")
    return found[0][1]


def code_of(model, layer: str):
    """``x -> the input of submodule layer`` when ``model`` sees x, differentiable."""
    from harness.kit.layers import input_of

    module = _submodule(model, layer)

    def code(x):
        captured = input_of(model, module, x)
        if captured is None:
            from harness.errors import HarnessError

            raise HarnessError(f"representation attack: the forward pass never reached '{layer}'")
        return captured.flatten(1)
    return code


def distance(code, clean, loss: str):
    """Per image: 1 - cos(code, clean) or ||code - clean||_2."""
    import torch.nn.functional as F

    if loss == "cosine":
        return 1 - F.cosine_similarity(code, clean, dim=1, eps=1e-12)
    return (code - clean).norm(dim=1)


def build(model, eps: float, options: dict):
    import torch

    code = code_of(model, options["layer"])

    def attack(x, y):
        with torch.no_grad():
            clean = code(x)
        generator = torch.Generator().manual_seed(options["seed"])
        adv = x.clone()
        if options["random_start"]:
            adv = (x + (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps).clamp(0, 1)
        best = x.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(options["steps"]):
            adv.requires_grad_(True)
            grad, = torch.autograd.grad(distance(code(adv), clean, options["loss"]).sum(), adv)
            with torch.no_grad():
                adv = adv + options["alpha"] * grad.sign()
                adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
                wrong = model(adv).argmax(1) != y
            best[wrong & ~fooled] = adv[wrong & ~fooled]
            fooled |= wrong
        best[~fooled] = adv[~fooled]
        return best.detach()
    return attack


TRANSFER_DEFAULTS = {"source": "", "source_defense": "none", "via": ""}  # the core checks the keys


def build_transfer(model, eps: float, options: dict):
    """``via`` run on the source (both resolved by the core); the cell scores the result on ``model``."""
    return options["via"](options["source"], eps)


@hookimpl
def harness_register_attacks(register):
    register(Attack(name="transfer", backend="torch", build=build_transfer, defaults=TRANSFER_DEFAULTS,
                    transfer=True,
                    description="adversarial examples made on another model of the suite (source, via), scored here"))
    register(Attack(name="representation", backend="torch", build=build, defaults=DEFAULTS, check=_check,
                    steps_option="steps",
                    description="PGD on a hidden layer's code: push it away from the clean image's, score the head"))
