"""The statistics every reported number carries, all from scipy.stats (no hand-written formulas):

- :func:`proportion_interval`: a 95 % Wilson interval for an accuracy measured on n images;
- :func:`seed_summary`: mean, standard deviation and t-interval of a number over seeds (seed
  variation), widened to at least the Wilson interval over the n images when n is given;
- :func:`paired_difference`: the difference of two models' accuracies on the same images, with a
  paired bootstrap interval over images and a paired test over images: exact McNemar for one seed,
  a sign-flip permutation test of the per-image mean difference for several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95         # every interval the harness reports is a 95 % interval
RESAMPLES = 9999     # bootstrap and permutation resamples
NAN = float("nan")
MCNEMAR = "exact McNemar"         # PairedDifference.test with one seed
SIGN_FLIP = "sign-flip permutation"  # ... with several seeds
PERMUTATION_CELLS = 10_000_000    # resamples x images held in memory at once by the permutation test


def proportion_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (scipy's ``binomtest(...).proportion_ci``);
    (nan, nan) when n is 0."""
    from scipy.stats import binomtest

    if n <= 0:
        return NAN, NAN
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_interval(accuracy: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """:func:`proportion_interval` of an accuracy stored as a fraction of n images."""
    if n != n or n <= 0 or accuracy != accuracy:
        return NAN, NAN
    return proportion_interval(round(accuracy * n), int(n), level)


@dataclass(frozen=True)
class SeedSummary:
    seeds: int
    mean: float
    sd: float     # sample standard deviation (ddof 1); nan for one seed
    low: float    # interval of the mean (see seed_summary); nan for one seed without n
    high: float


def seed_summary(values: Sequence[float], level: float = LEVEL, n: int | None = None) -> SeedSummary:
    """Mean, standard deviation and interval of one number measured with several seeds.

    The Student-t interval over seeds measures seed variation only: every seed saw the same test
    images, so it says nothing about which images were drawn (and has no width when the seeds
    agree). Given ``n``, the number of test images behind each value (an accuracy), the interval is
    widened to cover at least the Wilson interval of the mean accuracy over those n images, so it is
    never narrower than what one seed's test set supports; for one seed it is that Wilson interval.
    With ``n`` the interval is also clipped to [0, 1]. Without ``n``: the t-interval alone (nan for one seed)."""
    from scipy import stats

    array = np.asarray([v for v in values if v == v], dtype=float)
    if len(array) == 0:
        return SeedSummary(0, NAN, NAN, NAN, NAN)
    mean = float(array.mean())
    low = high = sd = NAN
    if len(array) >= 2:
        sd = float(array.std(ddof=1))
        if sd == 0:
            low = high = mean
        else:
            low, high = (float(v) for v in stats.t.interval(level, len(array) - 1, loc=mean,
                                                            scale=float(stats.sem(array))))
    if n is not None and n == n and n > 0:
        wilson_low, wilson_high = accuracy_interval(mean, int(n), level)
        low = wilson_low if low != low else min(low, wilson_low)
        high = wilson_high if high != high else max(high, wilson_high)
        low, high = max(low, 0.0), min(high, 1.0)  # an accuracy: the t-interval may overshoot [0, 1]
    return SeedSummary(len(array), mean, sd, low, high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "A and B are equally accurate" each discordant pair
    (one right, the other wrong) is a fair coin, so ``only_a`` ~ Binomial(only_a + only_b, 1/2)."""
    from scipy.stats import binomtest

    discordant = int(only_a) + int(only_b)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(only_a), discordant, 0.5).pvalue)


def sign_flip_test(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of "each image's difference is as likely positive as negative" for one
    number per image (``scipy.stats.permutation_test``, ``permutation_type="samples"``: the sign of
    each image's difference flips independently; statistic: the mean). Images with no difference are
    left out: flipping them changes nothing. Exact when 2 ** (images that differ) <= ``resamples``,
    else ``resamples`` random sign patterns drawn from ``seed`` (p is then at least
    2 / (resamples + 1): the observed pattern counts as one of them)."""
    from scipy.stats import permutation_test

    nonzero = np.asarray(differences, dtype=float)
    nonzero = nonzero[nonzero != 0]
    if len(nonzero) == 0:
        return 1.0
    result = permutation_test((nonzero,), np.mean, permutation_type="samples", vectorized=True,
                              n_resamples=resamples, batch=max(1, PERMUTATION_CELLS // len(nonzero)),
                              alternative="two-sided", rng=np.random.default_rng(seed))
    return float(min(1.0, result.pvalue))


@dataclass(frozen=True)
class PairedDifference:
    images: int       # distinct images
    pairs: int        # image x seed pairs (images times the seeds compared)
    acc_a: float
    acc_b: float
    diff: float       # acc_a - acc_b
    low: float        # paired bootstrap interval of diff, resampling images
    high: float
    only_a: int       # image x seed pairs A got right and B wrong (a count, not the test's unit)
    only_b: int
    p_value: float    # the paired test over images named by ``test``
    test: str         # MCNEMAR (one seed) or SIGN_FLIP (several)


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = 0) -> PairedDifference:
    """A and B's per-image outcomes (1 = correct / robust), shape (seeds, images) or (images,), the same
    images in the same order. The interval resamples images, each carrying its outcomes under every
    seed, so images that are hard for every seed are not counted as independent evidence.

    The p-value tests "A and B are equally accurate" with the image as the unit, for the same
    reason: with one seed, the exact McNemar test on the images exactly one model gets right; with
    several, :func:`sign_flip_test` of each image's difference averaged over the seeds (seeds of one
    image are not independent evidence, so the image x seed pairs are not counted as such)."""
    from scipy.stats import bootstrap

    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"outcomes of A {a.shape} and B {b.shape} do not pair up")
    per_image = (a - b).mean(axis=0)  # each image's difference, averaged over seeds
    diff = float(per_image.mean())
    if len(per_image) < 2 or np.ptp(per_image) == 0:
        low = high = diff  # every resample gives the same mean
    else:
        result = bootstrap((per_image,), np.mean, confidence_level=level, n_resamples=resamples,
                           method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    if a.shape[0] == 1:
        test, p_value = MCNEMAR, mcnemar_exact(only_a, only_b)
    else:
        test, p_value = SIGN_FLIP, sign_flip_test(per_image, resamples, seed)
    return PairedDifference(images=a.shape[1], pairs=a.size, acc_a=float(a.mean()), acc_b=float(b.mean()),
                            diff=diff, low=low, high=high, only_a=only_a, only_b=only_b,
                            p_value=p_value, test=test)


def fmt_p(p: float) -> str:
    """A p-value for a table: three significant digits, or an upper bound below 1e-4."""
    if p != p:
        return ""
    return "< 1e-4" if p < 1e-4 else f"{p:.3g}"


def p_clause(p: float) -> str:
    """"p = 0.0123" or "p < 1e-4", for a sentence."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
