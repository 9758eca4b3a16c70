"""Drift statistics with thresholds that follow the window's sample size.

Under no drift, PSI between a window of ``n`` values and a reference of ``m`` is about
``chi2(B - 1) * (1/n + 1/m)`` (B bins), so a fixed 0.1 / 0.25 fires on small windows and sleeps
on large ones; the threshold here is that chi-square quantile (Wilson-Hilferty approximation,
no scipy) at a false-alarm rate ``alpha`` per test. KS compares the window's empirical CDF with
the reference quantiles; its critical value is the asymptotic two-sample one plus the
reference's resolution (the quantile grid's step).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from fraud_core.monitoring.profile import ReferenceBins

SMOOTHING = 0.5
"""Pseudo-count per bin of the window, so an empty bin has a finite log ratio."""


def chi2_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of chi-square with ``dof`` degrees of freedom (Wilson-Hilferty)."""
    if dof < 1:
        raise ValueError("dof must be at least 1")
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * dof)
    return dof * max(0.0, 1.0 - c + z * math.sqrt(c)) ** 3


def psi(expected: npt.NDArray[np.float64], observed_counts: npt.NDArray[np.int64]) -> float:
    """Population stability index of a window's bin counts against reference proportions."""
    e = np.asarray(expected, dtype=np.float64)
    c = np.asarray(observed_counts, dtype=np.float64)
    a = (c + SMOOTHING) / (c.sum() + SMOOTHING * len(c))
    return float(np.sum((a - e) * np.log(a / e)))


def psi_threshold(bins: int, n: int, m: int, alpha: float) -> float:
    """PSI above which a window of ``n`` differs from a reference of ``m`` at false-alarm rate alpha."""
    if bins < 2:
        return math.inf  # one bin: nothing can move
    return chi2_quantile(1.0 - alpha, bins - 1) * (1.0 / n + 1.0 / m)


def reference_cdf(quantiles: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The reference CDF at ``x``: linear between evenly spaced quantiles, exact at repeated ones."""
    probs = np.linspace(0.0, 1.0, len(quantiles))
    values, last = np.unique(quantiles[::-1], return_index=True)
    # for a repeated quantile (an atom), the CDF at it is the highest probability it reaches
    top = probs[::-1][last]
    cdf = np.interp(x, values, top, left=0.0, right=1.0)
    return np.asarray(cdf, dtype=np.float64)


def ks_statistic(reference: ReferenceBins, values: npt.NDArray[np.float64]) -> float:
    """Largest gap between the window's empirical CDF and the reference CDF."""
    q = np.asarray(reference.quantiles, dtype=np.float64)
    sample = np.sort(np.asarray(values, dtype=np.float64))
    points = np.union1d(q, sample)
    empirical = np.searchsorted(sample, points, side="right") / len(sample)
    return float(np.max(np.abs(empirical - reference_cdf(q, points))))


def ks_threshold(n: int, m: int, alpha: float, *, resolution: float) -> float:
    """Two-sample KS critical value at ``alpha`` plus the reference grid's resolution."""
    return math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n + m) / (n * m)) + resolution
