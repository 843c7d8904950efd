"""Uncertainty over dialogues: bootstrap confidence intervals and a paired sign-flip permutation test.

Values are per dialogue (a dialogue's mean over its references) with a weight (its number of references), so a
weighted mean over dialogues equals the mean over rows that the per-row protocol reports.
"""

import math
from statistics import NormalDist
from typing import Optional

import numpy as np


def weighted_mean(values, weights) -> float:
    return float(np.average(values, weights=weights))


def bootstrap_ci(values, weights=None, resamples: int = 1000, seed: int = 0, confidence: float = 0.95):
    """(mean, low, high): percentile bootstrap of the weighted mean, resampling dialogues with replacement."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    means = (v[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return weighted_mean(v, w), float(low), float(high)


def bootstrap_ci_seeds(values, weights=None, resamples: int = 1000, seed: int = 0, confidence: float = 0.95):
    """(mean, low, high) of a method trained with several seeds: `values` is seeds x dialogues. A two-level
    bootstrap: each resample draws seeds with replacement, then dialogues with replacement, so the interval holds
    seed-to-seed variation as well as the sampling of dialogues. One seed: exactly bootstrap_ci."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    if len(v) == 1:
        return bootstrap_ci(v[0], weights, resamples, seed, confidence)
    w = np.ones(v.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    dialogues = rng.integers(0, v.shape[1], size=(resamples, v.shape[1]))
    seeds = rng.integers(0, len(v), size=(resamples, len(v)))
    over_seeds = v[seeds].mean(axis=1)  # resamples x dialogues: each resample's mean over its drawn seeds
    picked = np.take_along_axis(over_seeds, dialogues, axis=1)
    means = (picked * w[dialogues]).sum(axis=1) / w[dialogues].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return weighted_mean(v.mean(axis=0), w), float(low), float(high)


def seed_resampled_means(v, dialogues, w, rng):
    """Each resample's weighted mean of `v` (seeds x dialogues): its seeds drawn with replacement (one seed: that
    seed, no draw), then the given draw of `dialogues` (resamples x dialogues), shared by what is compared."""
    resamples, n = dialogues.shape
    over_seeds = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1) if len(v) > 1 else \
        np.broadcast_to(v[0], (resamples, n))
    picked = np.take_along_axis(over_seeds, dialogues, axis=1)
    return (picked * w[dialogues]).sum(axis=1) / w[dialogues].sum(axis=1)


def bootstrap_difference_seeds(a, b, weights=None, resamples: int = 1000, seed: int = 0, confidence: float = 0.95):
    """(mean of b - mean of a, low, high) for two trainings of a method (each seeds x dialogues, scored on the same
    dialogues): each resample draws a's seeds and b's seeds, each from its own, and ONE draw of dialogues for both."""
    runs = [np.atleast_2d(np.asarray(v, dtype=float)) for v in (a, b)]
    w = np.ones(runs[0].shape[1]) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    dialogues = rng.integers(0, len(w), size=(resamples, len(w)))
    means = [seed_resampled_means(v, dialogues, w, rng) for v in runs]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means[1] - means[0], [alpha, 1 - alpha])
    return weighted_mean(runs[1].mean(axis=0), w) - weighted_mean(runs[0].mean(axis=0), w), float(low), float(high)


def drawn_means(per_model: dict, weights=None, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """resamples x models: each resample's mean per model (in the order of `per_model`) from the two-level
    bootstrap of bootstrap_ci_seeds drawn for every model at once: each resample draws each model's seeds from its
    own, then ONE draw of dialogues shared by all models (they were scored on the same test set).
    `per_model[m]` is seeds x dialogues."""
    values = [np.atleast_2d(np.asarray(v, dtype=float)) for v in per_model.values()]
    n = values[0].shape[1]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    dialogues = rng.integers(0, n, size=(resamples, n))
    return np.stack([seed_resampled_means(v, dialogues, w, rng) for v in values], axis=1)


def rank_probabilities(per_model: dict, weights=None, resamples: int = 1000, seed: int = 0) -> dict:
    """{model: [P(rank 1), P(rank 2), ...]} (rank 1 = the highest mean) over drawn_means' resamples. Ties in a
    resample go to the model listed first."""
    means = drawn_means(per_model, weights, resamples, seed)
    ranks = np.argsort(np.argsort(-means, axis=1, kind="stable"), axis=1)  # 0 = best in that resample
    return {m: [float(np.mean(ranks[:, j] == r)) for r in range(len(per_model))] for j, m in enumerate(per_model)}


def frontier_probabilities(per_model: dict, costs: dict, weights=None, resamples: int = 1000,
                           seed: int = 0) -> dict:
    """{model: P(on the cost-quality frontier)} over drawn_means' resamples: in a resample a model is on the
    frontier when no other model costs at most as much and scores strictly higher (costs[m] is fixed, e.g. its
    trainable parameters; quality is the drawn mean). The probabilities do not sum to 1: their sum is the
    frontier's expected size."""
    means = drawn_means(per_model, weights, resamples, seed)
    cost = np.array([costs[m] for m in per_model], dtype=float)
    no_dearer = cost[None, :] <= cost[:, None]  # [j, k]: model k costs at most what model j costs
    on = np.ones(means.shape, dtype=bool)
    for j in range(len(cost)):
        beaten = (means[:, no_dearer[j]] > means[:, [j]]).any(axis=1)
        on[:, j] = ~beaten
    return {m: float(on[:, j].mean()) for j, m in enumerate(per_model)}


def paired_permutation_test(a, b, weights=None, permutations: int = 10000, seed: int = 0):
    """(mean difference a-b, two-sided p-value): under H0 each dialogue's difference is as likely negated."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    observed = float((d * w).sum() / w.sum())
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(permutations, len(d)))
    null = (signs * d * w).sum(axis=1) / w.sum()
    extreme = np.count_nonzero(np.abs(null) >= abs(observed) - 1e-12)
    return observed, float((extreme + 1) / (permutations + 1))


POWER = 0.8  # the chance a test dialogue count is sized for: a real difference of the measured size is found


def dialogues_needed(differences, weights=None, power: float = POWER, alpha: float = 0.05) -> Optional[int]:
    """Test dialogues a two-sided paired test at level `alpha` needs to find a mean per-dialogue difference of the
    size measured here with probability `power`: n = ((z(1 - alpha/2) + z(power)) * sd / |mean|)^2, the normal
    approximation to the paired test (mean and sd weighted as the paired test weights dialogues). None when the
    measured difference is zero: there is no size to look for."""
    d = np.asarray(differences, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    mean = float((d * w).sum() / w.sum())
    if len(d) < 2 or abs(mean) < 1e-12:
        return None
    sd = math.sqrt(float((w * (d - mean) ** 2).sum() / w.sum()) * len(d) / (len(d) - 1))
    z = NormalDist().inv_cdf
    return max(2, math.ceil(((z(1 - alpha / 2) + z(power)) * sd / abs(mean)) ** 2))


def holm_adjust(p_values) -> list[float]:
    """Holm's step-down adjustment: controls the family-wise error rate over all the comparisons made."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
