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
    # which images the figure is a share of: "all" test images, or only the "clean-correct" ones (the
    # thesis's attack loop, appendix A ``torch_attack``, skips images the clean net gets wrong and
    # divides by the number it attacked)
    denominator: str = "all"
    # "=": the thesis gives the value; "≤": it only bounds it from above
    relation: str = "="


# (quantity, model key) -> value. The thesis has no results table: every number is in the text of
# §2.3 (accuracies) and §3.2 (masking, PGD). Quantities:
#   test_acc        clean accuracy on the 10 000 MNIST test images
#   train_acc       accuracy on the 60 000 training images after the last epoch
#   unmasking_T     the smallest logit temperature T at which no test image has an exactly zero input
#                   gradient (share <= UNMASKED_SHARE)
#   pgd40_eps0.15   robust accuracy under PGD (L-inf, 40 steps of 2/255, random start) at eps 0.15,
#                   T = 1e5, among the test images the clean net classifies correctly
REFERENCE: dict[tuple[str, str], Reference] = {
    ("test_acc", "bio"): Reference(0.977, "§2.3, text: \"97.7 % en la red Bio vs. 98.2 % en la red BP\""),
    ("test_acc", "bp"): Reference(0.982, "§2.3, text (Figure 2.2 plots test accuracy over 100 epochs)"),
    ("train_acc", "bio"): Reference(0.997, "§2.3, text: the Bio net reaches 99.7 % on the training set"),
    ("train_acc", "bp"): Reference(1.0, "§2.3, text: the BP net reaches 100 % on the training set"),
    # §3.2: "se requiere un reescalamiento de T = 10^5 antes de que tanto la red BP como la Bio muestren
    # gradientes distintos de cero en todos los puntos" -- 1e5 un-masks both nets; Bio is the one that
    # needs it ("la red Bio requiere de un factor de escalamiento mayor para poder calcular todos los
    # gradientes"), while BP's share "cae bastante más rápido" (Figure 3.1): for BP, 1e5 is a bound.
    ("unmasking_T", "bio"): Reference(1e5, "§3.2, text: T = 1e5 before both nets have a non-zero gradient at "
                                           "every test image; Bio needs the larger T (Figure 3.1)"),
    ("unmasking_T", "bp"): Reference(1e5, "§3.2, text: BP's zero-gradient share \"cae bastante más rápido\" "
                                          "than Bio's; 1e5 un-masks both (Figure 3.1)", relation="≤"),
    ("pgd40_eps0.15", "bio"): Reference(0.578, "§3.2, text: \"57.8 % vs 24.2 %\" at ε = 0.15 (Figure 3.2)",
                                        "clean-correct"),
    ("pgd40_eps0.15", "bp"): Reference(0.242, "§3.2, text (Figure 3.2): PGD-40, ε = 0.15, T = 1e5, BP",
                                       "clean-correct"),
}


@dataclass(frozen=True)
class Claim:
    """A qualitative statement of the thesis that a run can agree or disagree with."""

    key: str
    text: str    # the claim, in English
    source: str  # where in the thesis


# Checked by harness_reporters.report_claims against a run's rows; each needs the rows it names.
CLAIMS: tuple[Claim, ...] = (
    Claim("fgsm_bio_slower", "FGSM at T = 1e5: Bio's accuracy falls more slowly with ε than BP's",
          "§3.2, text on Figure 3.2: \"el desempeño de la red Bio cae más lento que en la BP\""),
    Claim("fgsm_both_below_10", "FGSM at T = 1e5: both nets eventually drop below 10 % accuracy",
          "§3.2, text on Figure 3.2: \"Ambas redes eventualmente caen debajo del 10% de acierto\""),
    Claim("fgsm_larger_T_helps_bio", "FGSM with T above 1e5 leaves Bio more accurate than at T = 1e5",
          "§3.2: \"pruebas con factores mayores a 10^5 resultaban más bien en un mejor desempeño de la red Bio\""),
    Claim("bio_pgd_above_bp_fgsm", "Bio under PGD stays more accurate than BP under (the weaker) FGSM, T = 1e5",
          "§3.2: \"la robustez de la red Bio contra el método PGD sigue siendo mayor que la de la red BP contra "
          "el método FGSM\""),
    Claim("zero_grad_falls_faster_bp", "The zero-gradient share falls much faster with T for BP than for Bio",
          "§3.2 and Figure 3.1: \"cae bastante más rápido en la red BP que en la Bio\""),
    Claim("clean_comparable", "Clean test accuracies are comparable (~98 %), BP ahead by about 0.5 points",
          "§2.3: \"precisiones comparables (~98%) ... diferencia de 0.5% a favor del modelo BP\""),
)

QUANTITIES = {
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "unmasking_T": "smallest T with no zero gradient at any test image",
    "pgd40_eps0.15": "PGD-40 robust accuracy, ε = 0.15, T = 1e5, among clean-correct images",
}

# The share of test images with a zero gradient at which a net counts as un-masked: none, as §3.2
# says ("gradientes distintos de cero en todos los puntos correspondientes a las imágenes de prueba";
# appendix A ``check_gradients`` counts every test image).
UNMASKED_SHARE = 0.0

# The logit temperature of every attack in §3.2, FGSM and PGD: "Usando el valor de 10^5 para dividir
# el vector de salida de las redes" (FGSM, Figure 3.2); PGD was run "de igual manera".
ATTACK_T = 1e5
# The attack setting of the thesis's robust-accuracy numbers, for matching rows of a run.
PGD_STEPS = 40
PGD_EPS = 0.15
PGD_T = ATTACK_T

# §3.2 on FGSM (Figure 3.2): "Ambas redes eventualmente caen debajo del 10% de acierto, quedando más bajo
# que si seleccionara categorías al azar".
FGSM_BOTTOM = 0.10

# §2.3: "ambos modelos alcanzan precisiones comparables (~98%) en el conjunto de prueba, con una
# diferencia de 0.5% a favor del modelo BP" (the 0.5 points are test_acc bp - test_acc bio above).
CLEAN_LEVEL = 0.98


def reference(quantity: str, model: str) -> Reference | None:
    return REFERENCE.get((quantity, model))
