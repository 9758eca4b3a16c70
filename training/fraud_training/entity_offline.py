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
    SIMULATED_FEATURE_NAMES,
    WINDOW_DAYS,
    calendar,
)


def _rolling_sum(frame: pd.DataFrame, key: str, column: str, days: int) -> pd.Series:
    """Per-key sum of ``column`` over (t - days, t], rows in time order (ties: earlier rows only)."""
    grouped = frame.groupby(key, sort=False)
    rolled = grouped.rolling(f"{days}D", on="tx_datetime", closed="right")[column].sum().to_numpy()
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
    for w in WINDOW_DAYS:
        count = _rolling_sum(frame, "customer_id", "one", w)
        total = _rolling_sum(frame, "customer_id", "amount", w)
        out[f"card_nb_tx_{w}d"] = count
        out[f"card_avg_amount_{w}d"] = total / count
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
    assert DAY == 86_400
    return out[list(SIMULATED_FEATURE_NAMES)]
