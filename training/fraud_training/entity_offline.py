"""Offline, point-in-time computation of the simulated schema's features (pandas).

Windows and delays come from `fraud_core.shapes.simulated.features`; every value uses only transactions at
or before the current one (cards) or labels older than the label delay (terminals).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_core.shapes.simulated.features import (
    DAY,
    LABEL_DELAY_DAYS,
    LAST_K,
    MIN_MEDIAN,
    NO_KNOWN_FRAUD_DAYS,
    OUTLIER_FEATURES,
    OUTLIER_RULES,
    SIMULATED_FEATURE_NAMES,
    WINDOW_DAYS,
    calendar,
)


def _rolling_sum(frame: pd.DataFrame, key: str, column: str, days: int, how: str = "sum") -> pd.Series:
    """Per-key ``how`` (sum, median, max) of ``column`` over (t - days, t], rows in time order
    (ties: earlier rows only)."""
    grouped = frame.groupby(key, sort=False)
    window = grouped.rolling(f"{days}D", on="tx_datetime", closed="right")[column]
    rolled = getattr(window, how)().to_numpy()
    # The result comes group by group (groups in order of first appearance), rows in their
    # original order inside each group; its index is (key, time), which is ambiguous on ties,
    # so map it back to row positions explicitly.
    positions = np.argsort(grouped.ngroup().to_numpy(), kind="stable")
    out = np.empty(len(frame), dtype=np.float64)
    out[positions] = rolled
    return pd.Series(out, index=frame.index)


def entity_features(transactions: pd.DataFrame) -> pd.DataFrame:
    """Features of :data:`SIMULATED_FEATURE_NAMES` for transactions sorted by time."""
    frame = transactions[["tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud"]].copy()
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"])
    frame = frame.reset_index(drop=True)
    frame["one"] = 1.0
    frame["fraud"] = frame["is_fraud"].astype(np.float64)
    epoch = frame["tx_datetime"].astype("datetime64[s]").astype(np.int64).to_numpy()
    out = pd.DataFrame(index=frame.index)
    out["amount"] = frame["amount"].astype(np.float64)
    weekend, night = calendar(epoch)
    out["is_weekend"], out["is_night"] = weekend.astype(np.float64), night.astype(np.float64)
    card_totals: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for w in WINDOW_DAYS:
        count = _rolling_sum(frame, "customer_id", "one", w)
        total = _rolling_sum(frame, "customer_id", "amount", w)
        out[f"card_nb_tx_{w}d"] = count
        out[f"card_avg_amount_{w}d"] = total / count
        card_totals[w] = (count.to_numpy(), total.to_numpy())
    # Terminal windows end LABEL_DELAY_DAYS before the transaction: counts over (t-7d-w, t] minus
    # counts over (t-7d, t]. Rows after the current one at the same second are excluded by the
    # row-ordered rolling, as online processing excludes not-yet-seen transactions.
    recent_n = _rolling_sum(frame, "terminal_id", "one", LABEL_DELAY_DAYS)
    recent_f = _rolling_sum(frame, "terminal_id", "fraud", LABEL_DELAY_DAYS)
    for w in WINDOW_DAYS:
        n = _rolling_sum(frame, "terminal_id", "one", LABEL_DELAY_DAYS + w) - recent_n
        f = _rolling_sum(frame, "terminal_id", "fraud", LABEL_DELAY_DAYS + w) - recent_f
        out[f"terminal_nb_tx_{w}d"] = n
        out[f"terminal_risk_{w}d"] = np.where(n > 0, f / n.where(n > 0, 1.0), 0.0)
    month = max(WINDOW_DAYS)
    median = _rolling_sum(frame, "customer_id", "amount", month, "median").to_numpy()
    amount = out["amount"].to_numpy()
    out["card_median_amount_30d"] = median
    out["amount_over_card_median_30d"] = amount / np.maximum(median, MIN_MEDIAN)
    out["card_max_amount_30d"] = _rolling_sum(frame, "customer_id", "amount", month, "max")
    for w in (7, 30):
        seen, spent = card_totals[w]
        prev = np.where(seen > 1, (spent - amount) / np.maximum(seen - 1, 1), 0.0)
        out[f"amount_over_prev_mean_{w}d"] = np.where(prev > 0, amount / np.where(prev > 0, prev, 1.0), 0.0)
    outliers = _card_outliers(pd.factorize(frame["customer_id"])[0], epoch, amount, median)
    for name, column in zip(OUTLIER_FEATURES, outliers, strict=True):
        out[name] = column
    labels = _terminal_labels(
        frame["terminal_id"].to_numpy(),
        epoch,
        transactions["transaction_id"].astype(str).to_numpy(),
        frame["is_fraud"].to_numpy(np.int64),
    )
    for name, column in labels.items():
        out[name] = column
    assert DAY == 86_400
    return out[list(SIMULATED_FEATURE_NAMES)]


def _card_outliers(
    card: np.ndarray, epoch: np.ndarray, amount: np.ndarray, median: np.ndarray
) -> list[np.ndarray]:
    """Per :data:`OUTLIER_RULES` (factor, days): how many of the card's earlier rows (row order:
    time, then arrival) in (t - days, t] have an amount above factor x the current row's median."""
    order = np.lexsort((np.arange(len(card)), card))  # by card, rows in time order inside
    c, t, a, m = card[order], epoch[order], amount[order], median[order]
    pos = np.arange(len(order))
    first = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
    group_start = np.repeat(first, np.diff(np.r_[first, len(c)]))
    group = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(c)]))
    # One sorted key for all cards (card blocks far apart), so one searchsorted finds window starts.
    key = group.astype(np.int64) * (1 << 40) + (t - t.min() if len(t) else t)
    out = []
    for factor, days in OUTLIER_RULES:
        lo = np.maximum(np.searchsorted(key, key - days * DAY, side="right"), group_start)
        count = np.zeros(len(c))
        limit = factor * m
        for back in range(1, int((pos - lo).max(initial=0)) + 1):
            j = pos - back
            inside = j >= lo
            count[inside] += a[j[inside]] > limit[inside]
        column = np.empty(len(c))
        column[order] = count
        out.append(column)
    return out


def _terminal_labels(
    terminal: np.ndarray, epoch: np.ndarray, ids: np.ndarray, fraud: np.ndarray
) -> dict[str, np.ndarray]:
    """The terminal label features: per transaction at t, the terminal's transactions in
    (t - delay - 30d, t - delay] newest first (equal times: larger id first, as Redis orders
    them), their labels, as the online script reads them."""
    delay, span = LABEL_DELAY_DAYS * DAY, max(WINDOW_DAYS) * DAY
    out = {f"terminal_fraud_share_last{k}": np.zeros(len(epoch)) for k in LAST_K}
    since = np.full(len(epoch), NO_KNOWN_FRAUD_DAYS)
    streak = np.zeros(len(epoch))
    age = np.zeros(len(epoch))
    gap = np.zeros(len(epoch))
    order = np.lexsort((ids, epoch, terminal))
    bounds = np.flatnonzero(np.diff(terminal[order])) + 1
    for rows in np.split(order, bounds):
        t, y = epoch[rows], fraud[rows]
        hi = np.searchsorted(t, t - delay, side="right")  # known rows: [lo, hi)
        lo = np.searchsorted(t, t - delay - span, side="right")
        seen = np.r_[0, np.cumsum(y)]
        for k in LAST_K:
            m = np.minimum(k, hi - lo)
            out[f"terminal_fraud_share_last{k}"][rows] = np.where(
                m > 0, (seen[hi] - seen[hi - m]) / np.maximum(m, 1), 0.0
            )
        frauds = np.flatnonzero(y)
        latest = np.searchsorted(frauds, hi, side="left") - 1  # the last fraud before hi
        found = latest >= 0
        found[found] = frauds[latest[found]] >= lo[found]
        since[rows[found]] = (t[found] - t[frauds[latest[found]]]) / DAY
        last_legit = np.maximum.accumulate(np.where(y == 0, np.arange(len(y)), -1))
        top = hi - 1
        run_start = np.maximum(last_legit[np.maximum(top, 0)] + 1, lo)
        length = np.where((top >= lo) & (y[np.maximum(top, 0)] == 1), hi - run_start, 0)
        streak[rows] = length
        age[rows] = np.where(length > 0, (t - t[np.minimum(run_start, len(t) - 1)]) / DAY, 0.0)
        # The known legitimate transaction just before the run, or the window's start.
        before = np.where(run_start > lo, t[np.maximum(run_start - 1, 0)], t - delay - span)
        gap[rows] = np.where(length > 0, (t - before) / DAY, 0.0)
    return {
        **out,
        "terminal_days_since_known_fraud": since,
        "terminal_fraud_streak": streak,
        "terminal_fraud_streak_age_days": age,
        "terminal_fraud_streak_gap_days": gap,
    }
