"""Accuracy with 95% confidence intervals, and paired differences between methods.

Few-shot papers report the mean accuracy over episodes with a 95% interval of
``1.96 * std / sqrt(E)`` (normal approximation over episodes; Snell et al. 2017, Chen et al.
2019). fewmm reports that interval, in percent, as a half-width. For two methods evaluated on the
same episodes the paired difference uses the per-episode differences, which is much tighter than
comparing two independent intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval half-width, both in percent.

    Attributes
    ----------
    mean : float
    ci95 : float
        Half-width of the 95% normal-approximation interval.
    n : int
        Number of episodes averaged.
    std : float
        Standard deviation over episodes (ddof=1), percent.
    """

    mean: float
    ci95: float
    n: int
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.ci95:.2f}"


def per_episode_accuracy(predictions, targets) -> np.ndarray:
    """Fraction correct per episode.

    Parameters
    ----------
    predictions, targets : array-like of shape (E, Q), int

    Returns
    -------
    numpy.ndarray of shape (E,), float64, in [0, 1]
    """
    p = np.asarray(predictions)
    t = np.asarray(targets)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must both have shape (episodes, queries)")
    return (p == t).mean(axis=1)


def mean_ci(values) -> Estimate:
    """Mean and 95% CI half-width of per-episode accuracies.

    Parameters
    ----------
    values : array-like of shape (E,)
        Per-episode accuracy as a fraction in [0, 1].

    Returns
    -------
    Estimate in percent. ``ci95`` is 0 for a single episode (no spread can be estimated); it
    is NaN-free for any E >= 1.

    Raises
    ------
    ValueError
        Empty input or non-finite values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_ci needs at least one episode")
    if not np.isfinite(v).all():
        raise ValueError("mean_ci got NaN or infinite per-episode accuracies")
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Estimate(mean=100.0 * float(v.mean()), ci95=100.0 * Z95 * std / np.sqrt(v.size), n=int(v.size), std=100.0 * std)


def paired_difference(a, b) -> Estimate:
    """Mean of ``a - b`` over the same episodes, with its 95% CI (percent points).

    Parameters
    ----------
    a, b : array-like of shape (E,)
        Per-episode accuracies (fractions) of two methods on identical episodes.

    Raises
    ------
    ValueError
        Different numbers of episodes.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired difference needs the same episodes: got {a.size} and {b.size} episodes")
    return mean_ci(a - b)


def wilson_interval(correct: int, total: int) -> tuple[float, float, float]:
    """Accuracy over ``total`` independent items with its 95% Wilson score interval, in percent.

    For a test set of items (not episodes) the normal interval misbehaves near 0 or 100% and for
    small ``total``; the Wilson interval (Wilson 1927; Brown, Cai & DasGupta 2001) does not.

    Returns
    -------
    (accuracy, low, high) in percent.

    Raises
    ------
    ValueError
        ``total < 1`` or ``correct`` outside 0..total.
    """
    n, k = int(total), int(correct)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= correct <= total and total >= 1, got {k} / {n}")
    p = k / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100.0 * p, 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)
