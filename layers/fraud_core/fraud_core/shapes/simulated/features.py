"""The one definition of the simulated schema's features (cards and terminals).

Training computes them offline with pandas (`fraud_training.entity_offline`); serving computes
them online (`fraud_core.shapes.simulated.online`, Redis or memory). Both read their windows,
delay and calendar rules from here.

* calendar: ``is_weekend``, ``is_night`` (hour <= 6)
* per card, windows of 1, 7 and 30 days including the current transaction: number of
  transactions and average amount
* per terminal, with a label delay of 7 days: number of transactions and fraud rate over
  ``(t - 7d - w, t - 7d]`` for w in 1, 7, 30 days
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
SIMULATED_FEATURE_NAMES: tuple[str, ...] = ("amount", *CALENDAR_FEATURES, *CARD_FEATURES, *TERMINAL_FEATURES)

MAX_CARD_WINDOW = max(WINDOW_DAYS) * DAY
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


def feature_vector(epoch: int, amount: float, card: WindowStats, terminal: WindowStats) -> list[float]:
    """The model input, in :data:`SIMULATED_FEATURE_NAMES` order, from per-window statistics."""
    weekend, night = calendar([epoch])
    out = [amount, float(weekend[0]), float(night[0])]
    for n, total in card:
        out += [n, total / n if n else 0.0]
    for n, frauds in terminal:
        out += [n, risk(frauds, n)]
    return out


assert len(SIMULATED_FEATURE_NAMES) == 3 + 4 * len(WINDOW_DAYS)
