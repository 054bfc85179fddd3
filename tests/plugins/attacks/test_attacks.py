"""The attack plugins of both backends on a real (small, undefended) MNIST net: every attack runs
batched inside its threat model, strong attacks break the net at eps = 0.3, minimum-norm attacks find
small perturbations, PGD agrees across backends, AutoAttack keeps the paper's counts, and every
option is the library's parameter with the library's default."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from harness.plugins import load_registry

TORCHATTACKS = ["fgsm", "bim", "pgd", "pgd-l2", "cw", "deepfool", "apgd-ce", "apgd-dlr", "apgd-t", "fab",
                "square", "autoattack"]
ART = ["fgsm", "pgd", "cw", "deepfool", "hopskipjump", "square", "autoattack"]
KEYS = [f"{name}@torchattacks" for name in TORCHATTACKS] + [f"{name}@art" for name in ART]

# Reduced budgets where the defaults would take minutes on CPU (the defaults are checked by inspection
# below), and Madry et al.'s MNIST PGD (40 steps of 0.01 at eps 0.3): torchattacks' default 10 steps of
# 2/255 cannot even reach the corner of a 0.3 box.
OPTIONS = {
    "bim@torchattacks": {"steps": 40, "alpha": 0.01},
    "pgd@torchattacks": {"steps": 40, "alpha": 0.01},
    "pgd@art": {"max_iter": 40, "eps_step": 0.01, "num_random_init": 1},
    "square@torchattacks": {"n_queries": 300},
    "square@art": {"max_iter": 300},
    "autoattack@torchattacks": {"steps": 20, "n_queries": 200},
    "autoattack@art": {"max_iter": 20, "nb_random_init": 1, "square_max_iter": 200, "square_nb_restarts": 1},
    "hopskipjump@art": {"max_iter": 5, "max_eval": 200, "init_eval": 20},
    "deepfool@torchattacks": {"steps": 20},
}
FEW = {"autoattack@torchattacks", "autoattack@art", "hopskipjump@art", "deepfool@torchattacks"}
STRONG = {"bim@torchattacks", "pgd@torchattacks", "pgd@art", "apgd-ce@torchattacks", "apgd-dlr@torchattacks",
          "apgd-t@torchattacks", "fab@torchattacks", "square@torchattacks", "square@art",
          "autoattack@torchattacks", "autoattack@art"}
EPS = {"linf": 0.3, "l2": 1.5}
BOX_CORNER_L2 = 0.3 * 28  # the L2 norm of a full eps = 0.3 L-inf perturbation of a 28 x 28 image


@pytest.fixture(scope="module")
def net(mnist_small):
    """A plain ReLU net (64 hidden units, power 1, beta 1) trained with Adam on 5 000 images, and
    the first 500 test images. Returns (model, x, y, clean predictions)."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = mnist_small
    spec = load_registry().models.get("repu")
    info = load_registry().datasets.get("mnist").info
    torch.manual_seed(0)
    model = spec.build({**spec.defaults, "hidden": 64, "power": 1.0, "beta": 1.0}, info)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = x_train[:5000], y_train[:5000]
    for _ in range(5):
        for batch in torch.randperm(len(x)).split(100):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval().requires_grad_(False)
    x, y = x_test[:500], y_test[:500]
    with torch.no_grad():
        pred = model(x).argmax(1)
    yield model, x, y, pred
    torch.set_num_threads(threads)


def run(registry, net, key, n, eps=None, **options):
    """(x, y, x_adv, predictions on x_adv) for the first n test images."""
    import torch

    model, x, y, _ = net
    name, backend = key.split("@")
    spec = registry.attacks.get(name, backend)
    options = {**spec.defaults, **OPTIONS.get(key, {}), **options}
    if spec.check:
        spec.check(options)
    torch.manual_seed(0)
    x, y = x[:n], y[:n]
    adv = spec.build(model, EPS[spec.norm] if eps is None else eps, options)(x, y)
    with torch.no_grad():
        pred = model(adv).argmax(1)
    return x, y, adv, pred


def test_the_net_learned(net):
    _, _, y, pred = net
    assert (pred == y).float().mean() > 0.85


def test_every_attack_is_registered(registry):
    assert {entry.key for entry in registry.attacks.entries()} >= set(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_attack_runs_inside_its_threat_model(registry, net, key):
    spec = registry.attacks.get(*key.split("@"))
    n = 24 if key in FEW else 64
    x, y, adv, pred = run(registry, net, key, n)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    delta = (adv - x).flatten(1)
    eps = EPS[spec.norm]
    if not spec.minimal:
        if spec.norm == "linf":
            assert float(delta.abs().max()) <= eps + 1e-5
        else:
            assert float(delta.norm(dim=1).max()) <= eps + 1e-4
    clean = float((net[3][:n] == y).float().mean())
    robust = float((pred == y).float().mean())
    assert robust <= clean
    if key in STRONG:  # eps = 0.3 L-inf against an undefended MNIST net
        assert robust < 0.05, (key, robust)


@pytest.mark.parametrize("key, options", [
    ("deepfool@art", {}),
    ("cw@art", {}),
    # torchattacks' CW defaults (c = 1, 50 Adam steps of 0.01) flip only ~10 % of this net's images, and
    # its atanh change of variables pins pixels at exactly 0 or 1: only grey pixels move.
    ("cw@torchattacks", {"c": 10.0, "lr": 0.1, "steps": 100}),
])
def test_minimal_attacks_find_small_perturbations(registry, net, key, options):
    x, y, adv, pred = run(registry, net, key, 64, **options)
    correct = net[3][:64] == y
    flipped = correct & (pred != y)
    assert flipped.sum() >= 0.9 * correct.sum(), (key, int(flipped.sum()), int(correct.sum()))
    norms = (adv - x).flatten(1).norm(dim=1)[flipped]
    assert float(norms.median()) < BOX_CORNER_L2 / 3, (key, float(norms.median()))  # measured ~0.9 to ~2


def test_torchattacks_deepfool_stops_on_the_boundary(registry, net):
    """torchattacks' DeepFool applies the overshoot to each step, not to the total perturbation as
    the paper does; clipping to [0, 1] then leaves about half of this net's images on the decision
    boundary (top-two logits equal to float precision) rather than across it. What it finds is still
    a minimal perturbation: small, and either adversarial or on the boundary."""
    import torch

    x, y, adv, pred = run(registry, net, "deepfool@torchattacks", 24)
    correct = net[3][:24] == y
    flipped = correct & (pred != y)
    with torch.no_grad():
        top = net[0](adv).topk(2, dim=1).values
    on_boundary = (top[:, 0] - top[:, 1]) < 1e-4
    assert bool((flipped | on_boundary | ~correct).all())
    assert flipped.sum() >= 0.3 * correct.sum()
    assert float((adv - x).flatten(1).norm(dim=1)[flipped].median()) < BOX_CORNER_L2 / 3


def test_pgd_backends_agree(registry, net):
    """Same eps, step size, steps and one random start: torchattacks and ART within 2 points."""
    _, _, y, _ = net
    eps, step, steps = 0.1, 0.01, 20
    _, _, _, ta = run(registry, net, "pgd@torchattacks", 500, eps=eps, alpha=step, steps=steps,
                      random_start=True)
    _, _, _, art = run(registry, net, "pgd@art", 500, eps=eps, eps_step=step, max_iter=steps,
                       num_random_init=1)
    ta_acc, art_acc = float((ta == y).float().mean()), float((art == y).float().mean())
    assert 0.05 < ta_acc < float((net[3] == y).float().mean())  # an eps where the comparison means something
    print(f"PGD eps={eps} robust accuracy on 500 images: torchattacks {ta_acc:.3f}, ART {art_acc:.3f}")
    assert abs(ta_acc - art_acc) <= 0.02, (ta_acc, art_acc)


def test_torchattacks_autoattack_uses_the_papers_counts(registry, net):
    import torchattacks

    model = net[0]
    spec = registry.attacks.get("autoattack", "torchattacks")
    attack = spec.build(model, 0.3, dict(spec.defaults)).attack
    apgd, apgdt, fab, square = attack.attacks
    assert [type(a) for a in attack.attacks] == [torchattacks.APGD, torchattacks.APGDT, torchattacks.FAB,
                                                 torchattacks.Square]
    assert (apgd.loss, apgd.steps, apgd.n_restarts) == ("ce", 100, 1)
    assert (apgdt.steps, apgdt.n_target_classes, apgdt.n_restarts) == (100, 9, 1)
    assert (fab.multi_targeted, fab.steps, fab.n_target_classes, fab.n_restarts) == (True, 100, 9, 1)
    assert (square.n_queries, square.n_restarts) == (5000, 1)
    assert all(a.eps == 0.3 and a.norm == "Linf" and a.seed == 0 for a in attack.attacks)
    # torchattacks' own AutoAttack("standard") keeps the 10-step defaults: the reason for composing
    own = torchattacks.AutoAttack(model, norm="Linf", eps=0.3, version="standard", seed=0)._autoattack.attacks
    assert [getattr(a, "steps", None) for a in own] == [10, 10, 10, None] and own[3].n_queries == 5000


def test_art_autoattack_keeps_arts_budgets_and_eps(registry, net):
    from art.attacks.evasion import AutoProjectedGradientDescent, DeepFool, SquareAttack

    from harness_art import _estimator

    model, x, _, _ = net
    spec = registry.attacks.get("autoattack", "art")
    attack = spec.build(model, 0.3, dict(spec.defaults)).make_attack(_estimator(model, x[:4]), 4)
    assert attack.eps == 0.3 and attack.norm == np.inf and attack.targeted is False
    assert [type(a) for a in attack.attacks] == [AutoProjectedGradientDescent, AutoProjectedGradientDescent,
                                                 DeepFool, SquareAttack]
    apgd_ce, apgd_dlr, _, square = attack.attacks
    for apgd in (apgd_ce, apgd_dlr):
        assert (apgd.eps, apgd.max_iter, apgd.nb_random_init) == (0.3, 100, 5)
    assert (square.eps, square.max_iter, square.nb_restarts) == (0.3, 5000, 5)


def test_reseeding_attacks_leave_the_global_generator_alone(registry, net):
    import torch

    model, x, y, _ = net
    spec = registry.attacks.get("apgd-ce", "torchattacks")
    attack = spec.build(model, 0.3, dict(spec.defaults))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attack(x[:8], y[:8])  # APGD calls torch.manual_seed(seed) on every batch
    assert torch.equal(torch.rand(3), expected)


def _library_defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_options_are_the_libraries_defaults(registry):
    import torchattacks
    from art.attacks import evasion

    classes = {
        "fgsm@torchattacks": torchattacks.FGSM, "bim@torchattacks": torchattacks.BIM,
        "pgd@torchattacks": torchattacks.PGD, "pgd-l2@torchattacks": torchattacks.PGDL2,
        "cw@torchattacks": torchattacks.CW, "deepfool@torchattacks": torchattacks.DeepFool,
        "apgd-ce@torchattacks": torchattacks.APGD, "apgd-dlr@torchattacks": torchattacks.APGD,
        "apgd-t@torchattacks": torchattacks.APGDT, "fab@torchattacks": torchattacks.FAB,
        "square@torchattacks": torchattacks.Square,
        "fgsm@art": evasion.FastGradientMethod, "pgd@art": evasion.ProjectedGradientDescent,
        "cw@art": evasion.CarliniL2Method, "deepfool@art": evasion.DeepFool, "hopskipjump@art": evasion.HopSkipJump,
        "square@art": evasion.SquareAttack,
    }
    for key, cls in classes.items():
        declared = dict(registry.attacks.get(*key.split("@")).defaults)
        library = _library_defaults(cls)
        assert set(declared) <= set(library), (key, set(declared) - set(library))
        assert {k: library[k] for k in declared} == declared, key  # cw's c = 1.0 == 1: declared as floats
    art_aa = _library_defaults(evasion.AutoAttack)
    declared = registry.attacks.get("autoattack", "art").defaults
    assert (declared["eps_step"], declared["targeted"]) == (art_aa["eps_step"], art_aa["targeted"])
    assert dict(registry.attacks.get("autoattack", "torchattacks").defaults) == {
        "steps": 100, "n_queries": 5000, "n_classes": 10, "seed": 0}


def test_threat_model_fields(registry):
    minimal = {"cw@torchattacks", "deepfool@torchattacks", "cw@art", "deepfool@art", "hopskipjump@art"}
    gradient_free = {"square@torchattacks", "square@art", "hopskipjump@art"}
    l2 = minimal | {"pgd-l2@torchattacks"}
    for key in KEYS:
        spec = registry.attacks.get(*key.split("@"))
        assert spec.norm == ("l2" if key in l2 else "linf"), key
        assert spec.minimal == (key in minimal) and spec.gradient_free == (key in gradient_free), key
        assert spec.description, key
        if key.startswith("fgsm@"):
            assert spec.steps_option is None
        else:
            assert spec.steps_option in spec.defaults, key
        if spec.check:
            spec.check(dict(spec.defaults))  # the defaults pass


@pytest.mark.parametrize("key, bad, message", [
    ("pgd@torchattacks", {"steps": 0}, "steps: "),
    ("apgd-ce@torchattacks", {"rho": 1.5}, "rho: "),
    ("square@torchattacks", {"loss": "hinge"}, "loss: "),
    ("cw@torchattacks", {"c": -1.0}, "c: "),
    ("autoattack@torchattacks", {"n_queries": 0}, "n_queries: "),
    ("cw@art", {"binary_search_steps": 0}, "binary_search_steps: "),
    ("hopskipjump@art", {"init_eval": 20000}, "init_eval: "),
    ("pgd@art", {"decay": -0.5}, "decay: "),
])
def test_check_rejects_bad_options(registry, key, bad, message):
    spec = registry.attacks.get(*key.split("@"))
    with pytest.raises(ValueError, match=f"^{message}"):
        spec.check({**spec.defaults, **bad})


def test_too_many_target_classes_fails_clearly(registry, net):
    with pytest.raises(ValueError, match="n_classes: 11 is more than the model's 10 classes"):
        run(registry, net, "apgd-t@torchattacks", 4, n_classes=11)


# -- the representation attack (plugins/harness_adaptive) -------------------------------------------

def test_representation_attack_stays_in_the_ball_and_moves_the_code_more_than_noise(registry, net):
    import torch

    from harness_adaptive import code_of, distance

    model, x, y, pred = net
    x, y = x[:200], y[:200]
    spec = registry.attacks.get("representation", "torch")
    adv = spec.build(model, 0.1, dict(spec.defaults))(x, y)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    noise = registry.attacks.get("noise", "torch").build(model, 0.1, {"samples": 1})(x, y)
    code = code_of(model, "fc2")
    with torch.no_grad():
        moved, jittered = (distance(code(a), code(x), "cosine").mean() for a in (adv, noise))
        attacked, noisy, clean = ((model(a).argmax(1) == y).float().mean() for a in (adv, noise, x))
    assert moved > 5 * jittered
    assert attacked < clean - 0.1 and attacked < noisy - 0.1  # the head follows the code it reads


def test_representation_attack_ignores_the_logit_view_and_names_a_missing_layer(registry, net):
    import torch

    from harness.errors import HarnessError
    from harness_rescale.scale import LogitScale

    model, x, y, _ = net
    spec = registry.attacks.get("representation", "torch")
    plain = spec.build(model, 0.1, {**spec.defaults, "steps": 5})(x[:50], y[:50])
    scaled = spec.build(LogitScale(model, 1e5), 0.1, {**spec.defaults, "steps": 5})(x[:50], y[:50])
    assert torch.equal(plain, scaled)  # the code fc2 reads does not depend on T: the same images
    with pytest.raises(HarnessError, match="no submodule named 'fc9' in the model \\(its submodules: model, "
                                           "model.fc1, model.fc2\\); set the attack's layer option"):
        spec.build(LogitScale(model, 1.0), 0.1, {**spec.defaults, "layer": "fc9"})
