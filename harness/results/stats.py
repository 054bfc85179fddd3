"""The statistics every reported number carries, all from scipy.stats (no hand-written formulas):

- :func:`proportion_interval`: a 95 % Wilson interval for an accuracy measured on n images;
- :func:`seed_summary`: mean, standard deviation and t-interval of a number over seeds (seed
  variation), widened to at least the Wilson interval over the n images when n is given;
- :func:`two_level`: the mean of per-image outcomes measured with several seeds on the same images,
  with an interval that resamples seeds and images (training and image sampling), and the share of
  its variance that comes from the seeds;
- :func:`paired_difference`: the difference of two models' accuracies on the same images: with one
  seed, a bootstrap interval over images and the exact McNemar test; with several, the two-level
  interval and a two-level bootstrap test (paired by seed and by image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95         # every interval the harness reports is a 95 % interval
RESAMPLES = 9999     # bootstrap and permutation resamples
NAN = float("nan")
MCNEMAR = "exact McNemar"         # PairedDifference.test with one seed
TWO_LEVEL = "two-level bootstrap"  # PairedDifference.test with several seeds
PERMUTATION_CELLS = 10_000_000    # resamples x images held in memory at once by a resampling


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


@dataclass(frozen=True)
class TwoLevel:
    seeds: int
    images: int
    mean: float
    low: float          # 95 % percentile interval over resamples of seeds and images
    high: float
    seed_share: float   # share of the resampling variance from the seeds (0 with one seed)
    p_value: float      # two-sided bootstrap p of "the mean is 0" (for differences), >= 2 / (resamples + 1)


def _resampled_means(outcomes: np.ndarray, resamples: int, rng: np.random.Generator, seeds: bool,
                     images: bool) -> np.ndarray:
    """Means of ``outcomes`` [seeds, images] over ``resamples`` draws of seeds and/or images with
    replacement. Seeds and images are crossed (every seed saw the same images), so one draw of images
    serves every drawn seed: the mean over the drawn images of the drawn seeds' average outcome."""
    count, width = outcomes.shape
    batch = max(1, PERMUTATION_CELLS // width)  # resamples x images held in memory at once
    means = []
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        if seeds:
            drawn = rng.integers(0, count, size=(size, count))
            weights = (drawn[:, :, None] == np.arange(count)).sum(axis=1) / count   # [size, seeds]
            per_image = weights @ outcomes                                            # [size, images]
        else:
            per_image = np.broadcast_to(outcomes.mean(axis=0), (size, width))
        if images:
            per_image = np.take_along_axis(per_image, rng.integers(0, width, size=(size, width)), axis=1)
        means.append(per_image.mean(axis=1))
    return np.concatenate(means)


def two_level(outcomes: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> TwoLevel:
    """Interval of the mean of per-image outcomes [seeds, images] (or [images]) that includes training:
    each resample draws the seeds with replacement, then the images with replacement (one draw for all
    drawn seeds, since they were measured on the same images), so a seed spread and an image spread
    both widen it. With one seed it covers the images only. ``seed_share``: the variance of the means
    when only seeds are resampled over the sum of that and the variance when only images are."""
    x = np.atleast_2d(np.asarray(outcomes, dtype=float))
    count, width = x.shape
    mean = float(x.mean())
    rng = np.random.default_rng(seed)
    both = _resampled_means(x, resamples, rng, seeds=count > 1, images=True)
    low, high = (float(v) for v in np.quantile(both, [(1 - level) / 2, (1 + level) / 2]))
    share = 0.0
    if count > 1:
        by_seed = _resampled_means(x, resamples, rng, seeds=True, images=False).var()
        by_image = _resampled_means(x, resamples, rng, seeds=False, images=True).var()
        share = float(by_seed / (by_seed + by_image)) if by_seed + by_image > 0 else 0.0
    beyond = min(int((both <= 0).sum()), int((both >= 0).sum()))
    p_value = min(1.0, 2 * (beyond + 1) / (resamples + 1))
    return TwoLevel(count, width, mean, min(low, mean), max(high, mean), share, p_value)


def p_floor(resamples: int = RESAMPLES) -> float:
    """The smallest two-sided p-value ``resamples`` resamples can give: 2 / (resamples + 1)."""
    return 2 / (resamples + 1)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "A and B are equally accurate" each discordant pair
    (one right, the other wrong) is a fair coin, so ``only_a`` ~ Binomial(only_a + only_b, 1/2)."""
    from scipy.stats import binomtest

    discordant = int(only_a) + int(only_b)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(only_a), discordant, 0.5).pvalue)


@dataclass(frozen=True)
class PairedDifference:
    images: int       # distinct images
    pairs: int        # image x seed pairs (images times the seeds compared)
    acc_a: float
    acc_b: float
    diff: float       # acc_a - acc_b
    low: float        # paired bootstrap interval of diff: images (one seed), seeds and images (several)
    high: float
    only_a: int       # image x seed pairs A got right and B wrong (a count, not the test's unit)
    only_b: int
    p_value: float    # the paired test named by ``test``
    test: str         # MCNEMAR (one seed) or TWO_LEVEL (several)
    seed_share: float = 0.0  # share of the interval's variance from the seeds (two-level only)
    t_low: float = NAN       # several seeds: Student-t interval of the per-seed differences (training spread on
    t_high: float = NAN      # these images; wider than the bootstrap's with few seeds, which understates it)


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = 0) -> PairedDifference:
    """A and B's per-image outcomes (1 = correct / robust), shape (seeds, images) or (images,), the same
    images in the same order, row s of A and of B from the same seed.

    One seed: a percentile bootstrap over images and the exact McNemar test on the images exactly one
    model gets right; both cover the image sampling only. Several seeds: :func:`two_level` on the
    per-seed, per-image differences A - B (paired by seed and by image), so the interval and its
    two-sided bootstrap p-value include the seed-to-seed spread of both trainings, not just which
    images were drawn; the p-value's floor is :func:`p_floor`."""
    from scipy.stats import bootstrap

    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"outcomes of A {a.shape} and B {b.shape} do not pair up")
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    common = dict(images=a.shape[1], pairs=a.size, acc_a=float(a.mean()), acc_b=float(b.mean()),
                  only_a=only_a, only_b=only_b)
    if a.shape[0] > 1:
        result = two_level(a - b, level, resamples, seed)
        # A bootstrap over k seeds sees only their k-point spread (its variance is (k - 1) / k of theirs,
        # and few distinct resamples): the t-interval of the per-seed differences is the conservative
        # check beside it, though it omits the image sampling that all seeds share.
        spread = seed_summary(list((a - b).mean(axis=1)), level)
        return PairedDifference(**common, diff=result.mean, low=result.low, high=result.high,
                                p_value=result.p_value, test=TWO_LEVEL, seed_share=result.seed_share,
                                t_low=spread.low, t_high=spread.high)
    per_image = (a - b)[0]
    diff = float(per_image.mean())
    if len(per_image) < 2 or np.ptp(per_image) == 0:
        low = high = diff  # every resample gives the same mean
    else:
        result = bootstrap((per_image,), np.mean, confidence_level=level, n_resamples=resamples,
                           method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return PairedDifference(**common, diff=diff, low=low, high=high, p_value=mcnemar_exact(only_a, only_b),
                            test=MCNEMAR)


def fmt_p(p: float, floor: float = 0.0) -> str:
    """A p-value for a table: three significant digits, or an upper bound below 1e-4; a resampling
    p-value at its ``floor`` (:func:`p_floor`) is a bound, "<= 0.0002", never a point value."""
    if p != p:
        return ""
    if floor and p <= floor * (1 + 1e-9):
        return f"<= {floor:.2g}"
    return "< 1e-4" if p < 1e-4 else f"{p:.3g}"


def p_clause(p: float, floor: float = 0.0) -> str:
    """"p = 0.0123", "p < 1e-4" or, at a resampling floor, "p <= 0.0002", for a sentence."""
    text = fmt_p(p, floor)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
