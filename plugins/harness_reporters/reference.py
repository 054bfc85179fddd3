"""The numbers the thesis reports, in one place, for the report, tests and docs to share.

Thesis: "Análisis de robustez de una red neuronal bioinspirada" (UNAM, 2022). Its two nets are the
suites' model keys ``bio`` (Hebbian first layer, frozen, then a backprop head) and ``bp`` (the same
784 → 2000 RePU^4.5 → 10 architecture trained end to end): a run is matched to the thesis through
those keys, so a suite that wants the comparison names its models ``bio`` and ``bp``.
Accuracies are fractions, as in the results table.
"""

from __future__ import annotations

from dataclasses import dataclass

THESIS = "Análisis de robustez de una red neuronal bioinspirada (UNAM, 2022)"
MODELS = {"bio": "Bio", "bp": "BP"}  # suite model key -> the thesis's name for the net


@dataclass(frozen=True)
class Reference:
    value: float
    source: str  # where in the thesis, one line


# (quantity, model key) -> value. Quantities:
#   test_acc        clean accuracy on the 10 000 MNIST test images
#   train_acc       accuracy on the 60 000 training images after the last epoch
#   unmasking_T     the logit temperature from which the input gradients stop being exactly zero
#   pgd40_eps0.15   robust accuracy under PGD (L-inf, 40 steps of 2/255, random start) at eps 0.15, T = 1e5
REFERENCE: dict[tuple[str, str], Reference] = {
    ("test_acc", "bio"): Reference(0.977, "chapter 2, training results (Figure 2.2): Bio test accuracy"),
    ("test_acc", "bp"): Reference(0.982, "chapter 2, training results: BP test accuracy"),
    ("train_acc", "bio"): Reference(0.997, "chapter 2, training results (Figure 2.2): Bio train accuracy"),
    ("train_acc", "bp"): Reference(1.0, "chapter 2, training results: BP train accuracy"),
    ("unmasking_T", "bio"): Reference(1e5, "chapter 3 (Figure 3.1): logits divided by T ≈ 1e5 restore the gradient"),
    ("pgd40_eps0.15", "bio"): Reference(0.578, "chapter 3 (Figure 3.2): PGD-40, eps 0.15, T = 1e5, Bio"),
    ("pgd40_eps0.15", "bp"): Reference(0.242, "chapter 3 (Figure 3.2): PGD-40, eps 0.15, T = 1e5, BP"),
}

QUANTITIES = {
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "unmasking_T": "T at which gradients stop being zero",
    "pgd40_eps0.15": "PGD-40 robust accuracy, ε = 0.15, T = 1e5",
}

# The attack setting of the thesis's robust-accuracy numbers, for matching rows of a run.
PGD_STEPS = 40
PGD_EPS = 0.15
PGD_T = 1e5


def reference(quantity: str, model: str) -> Reference | None:
    return REFERENCE.get((quantity, model))
