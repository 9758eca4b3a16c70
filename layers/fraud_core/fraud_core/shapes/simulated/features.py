"""The one definition of the simulated schema's features (cards and terminals).

Training computes them offline with pandas (`fraud_training.entity_offline`); serving computes
them online (`fraud_core.shapes.simulated.online`, Redis or memory). Both read their windows,
delay and calendar rules from here.

* calendar: ``is_weekend``, ``is_night`` (hour <= 6)
* per card, windows of 1, 7 and 30 days including the current transaction: number of
  transactions and average amount
* per terminal, with a label delay of 7 days: number of transactions and fraud rate over
  ``(t - 7d - w, t - 7d]`` for w in 1, 7, 30 days

These 15 are the Handbook's baseline features. The extended features add what a fraud team
would look at, all computable online from the same windows and only from what is known at
scoring time:

* the card's amount against its own recent history: median and maximum over 30 days
  (including the current transaction), the amount over that median, the amount over the mean
  of the card's *previous* transactions in 7 and 30 days;
* how many of the card's earlier transactions in the last 14 (7) days were above 2 (3) times that
  30-day median: a card that has just made outsized purchases is likely compromised, so its next
  unusual amount is likelier fraud (the amounts are known at once; no label is needed);
* the terminal's latest labels, among its transactions in ``(t - 7d - 30d, t - 7d]`` (labels
  older than the delay only), newest first: the share of frauds among the last 1, 3 and 10,
  the days since its latest known fraud (37 when none), and the run of consecutive known frauds
  ending at the latest known transaction: its length, the age in days of its oldest, and the days
  since the known legitimate transaction just before it (37, the window's start, when none): a
  terminal compromised at some moment began its run of frauds between those two ages, so they
  bound how long the compromise has lasted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

WINDOW_DAYS: tuple[int, ...] = (1, 7, 30)
LABEL_DELAY_DAYS = 7
NIGHT_LAST_HOUR = 6
DAY = 86_400

CALENDAR_FEATURES = ("is_weekend", "is_night")
CARD_FEATURES = tuple(f for w in WINDOW_DAYS for f in (f"card_nb_tx_{w}d", f"card_avg_amount_{w}d"))
TERMINAL_FEATURES = tuple(f for w in WINDOW_DAYS for f in (f"terminal_nb_tx_{w}d", f"terminal_risk_{w}d"))
BASELINE_FEATURE_NAMES: tuple[str, ...] = ("amount", *CALENDAR_FEATURES, *CARD_FEATURES, *TERMINAL_FEATURES)
"""The Handbook's 15 baseline features."""
LAST_K = (1, 3, 10)
OUTLIER_RULES: tuple[tuple[int, int], ...] = ((2, 14), (3, 14), (3, 7))
"""(factor, days): count the card's earlier transactions in ``(t - days, t]`` above ``factor`` times
its 30-day median amount (the median of the window including the current transaction)."""
OUTLIER_FEATURES = tuple(f"card_prev_over_{f}x_median_{d}d" for f, d in OUTLIER_RULES)
EXTENDED_FEATURE_NAMES: tuple[str, ...] = (
    "card_median_amount_30d",
    "amount_over_card_median_30d",
    "card_max_amount_30d",
    "amount_over_prev_mean_7d",
    "amount_over_prev_mean_30d",
    *OUTLIER_FEATURES,
    *(f"terminal_fraud_share_last{k}" for k in LAST_K),
    "terminal_days_since_known_fraud",
    "terminal_fraud_streak",
    "terminal_fraud_streak_age_days",
    "terminal_fraud_streak_gap_days",
)
SIMULATED_FEATURE_NAMES: tuple[str, ...] = (*BASELINE_FEATURE_NAMES, *EXTENDED_FEATURE_NAMES)
"""Every feature the shape builds; a model uses all of them or a subset (the baseline's 15)."""

MAX_CARD_WINDOW = max(WINDOW_DAYS) * DAY
NO_KNOWN_FRAUD_DAYS = float(LABEL_DELAY_DAYS + max(WINDOW_DAYS))
"""`terminal_days_since_known_fraud` when the delayed window holds no known fraud."""
MIN_MEDIAN = 0.01
assert all(d * DAY <= MAX_CARD_WINDOW for _, d in OUTLIER_RULES), "outlier windows fit the card window"
MAX_TERMINAL_WINDOW = (LABEL_DELAY_DAYS + max(WINDOW_DAYS)) * DAY


def calendar(epoch_seconds: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """(is_weekend, is_night) of UTC epoch seconds."""
    t = np.asarray(epoch_seconds, dtype=np.int64)
    weekday = (t // DAY + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    hour = (t % DAY) // 3600
    return (weekday >= 5).astype(np.int8), (hour <= NIGHT_LAST_HOUR).astype(np.int8)


def card_window(t: float, w: int) -> tuple[float, float]:
    """(exclusive start, inclusive end) of the card window of ``w`` days at time ``t``."""
    return t - w * DAY, t


def terminal_window(t: float, w: int) -> tuple[float, float]:
    """(exclusive start, inclusive end) of the delayed terminal window of ``w`` days at ``t``."""
    end = t - LABEL_DELAY_DAYS * DAY
    return end - w * DAY, end


def risk(frauds: float, count: float) -> float:
    """Share of labelled frauds among the window's transactions, capped at 1: labels can only
    name scored transactions, but a window trimmed before its labels must not read above 1."""
    return min(frauds / count, 1.0) if count > 0 else 0.0


WindowStats = Sequence[tuple[float, float]]
"""Per window: (count, amount sum) for the card, (count, frauds) for the terminal."""


def over(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else 0.0


def prev_mean(n: float, total: float, amount: float) -> float:
    """Mean amount of the card's transactions before this one in a window that includes it."""
    return (total - amount) / (n - 1) if n > 1 else 0.0


def feature_vector(
    epoch: int, amount: float, card: WindowStats, terminal: WindowStats, extended: Sequence[float]
) -> list[float]:
    """The model input, in :data:`SIMULATED_FEATURE_NAMES` order, from per-window statistics and
    ``extended`` = (card median 30d, card max 30d, the outlier counts of :data:`OUTLIER_RULES`,
    share last 1, 3, 10, days since known fraud, streak, streak age days,
    streak gap days)."""
    weekend, night = calendar([epoch])
    out = [amount, float(weekend[0]), float(night[0])]
    for n, total in card:
        out += [n, total / n if n else 0.0]
    for n, frauds in terminal:
        out += [n, risk(frauds, n)]
    median, maximum, *rest = extended
    outliers, terminal_labels = rest[: len(OUTLIER_RULES)], rest[len(OUTLIER_RULES) :]
    (n7, s7), (n30, s30) = card[WINDOW_DAYS.index(7)], card[WINDOW_DAYS.index(30)]
    out += [
        median,
        amount / max(median, MIN_MEDIAN),
        maximum,
        over(amount, prev_mean(n7, s7, amount)),
        over(amount, prev_mean(n30, s30, amount)),
        *outliers,
        *terminal_labels,
    ]
    return out


assert len(BASELINE_FEATURE_NAMES) == 3 + 4 * len(WINDOW_DAYS)
