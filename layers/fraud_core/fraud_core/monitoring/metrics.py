"""Realised performance on labelled transactions, numpy only: average precision (as scikit-learn
computes it) and the Fraud Detection Handbook's Card Precision@k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

K = 100


def average_precision(y: npt.NDArray[np.int64], score: npt.NDArray[np.float64]) -> float | None:
    """Area under the precision-recall steps over distinct score thresholds; None without a fraud."""
    y = np.asarray(y, dtype=np.int64)
    if y.sum() == 0:
        return None
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    s, t = np.asarray(score)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(t)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def card_precision_at_k(
    day: npt.NDArray[np.int64],
    card: Sequence[str] | npt.NDArray[np.str_],
    y: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
    *,
    k: int = K,
) -> tuple[float | None, list[float]]:
    """(mean over days, per-day values): each day, the ``k`` cards with the highest max score,
    the share of them compromised; cards detected on an earlier day leave the later days."""
    day = np.asarray(day)
    cards = np.asarray(card)
    y = np.asarray(y, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    detected: set[str] = set()
    per_day: list[float] = []
    for d in np.unique(day):
        today = (day == d) & ~np.isin(cards, list(detected))
        names, inverse = np.unique(cards[today], return_inverse=True)
        best = np.full(len(names), -np.inf)
        np.maximum.at(best, inverse, score[today])
        fraud = np.zeros(len(names), dtype=np.int64)
        np.maximum.at(fraud, inverse, y[today])
        top = np.argsort(-best, kind="stable")[:k]
        found = names[top][fraud[top] == 1]
        per_day.append(len(found) / k)
        detected |= set(found.tolist())
    return (float(np.mean(per_day)) if per_day else None), per_day
