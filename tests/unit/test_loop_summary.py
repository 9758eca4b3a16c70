"""The loop demo's summary: which label-complete weeks count as before the drift, stale, after."""

from __future__ import annotations

from typing import Any

import pytest

from fraud_devstack.loop_demo import _summary


def _row(
    week: int, served: str, ap: float | None, action: str = "", gate: str | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"week": week, "served": served, "action": action, "served_ap": ap}
    row["served_cp"] = None if ap is None else ap / 2
    if gate:
        row["gate"] = gate
    return row


def test_summary_splits_weeks_by_the_model_that_served_them() -> None:
    # drift from week 9; a challenger promoted at the end of week 11 serves from week 12
    rows = [_row(w, "A", 0.9) for w in range(9)]
    rows += [_row(9, "A", 0.8, "retrained (rf) → challenger"), _row(10, "A", 0.5)]
    rows += [_row(11, "A", 0.4, "gate: promoted", gate="promoted"), _row(12, "B", 0.45)]
    rows += [_row(13, "B", 0.6), _row(14, "B", 0.7)]
    s = _summary(rows, drift_week=9)
    # row w reports week w - 1, served by row w - 1's model; monitoring starts at week 7
    assert s["weeks"] == {"before": [7, 8], "stale": [9, 10, 11], "after": [12, 13]}
    assert s["before_ap"] == pytest.approx(0.85) and s["stale_ap"] == pytest.approx((0.5 + 0.4 + 0.45) / 3)
    assert s["after_ap"] == pytest.approx(0.65) and s["after_cp"] == pytest.approx(0.325)
    assert (s["last_week"], s["last_ap"]) == (13, 0.7)
    assert s["first_promotion_week"] == 11 and s["retrains"] == 1


def test_summary_without_a_promotion_has_no_after_phase() -> None:
    rows = [_row(w, "A", 0.9 if w < 10 else 0.5) for w in range(14)]
    s = _summary(rows, drift_week=9)
    assert s["after_ap"] is None and s["weeks"]["after"] == [] and s["first_promotion_week"] is None
