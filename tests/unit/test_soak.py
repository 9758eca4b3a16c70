"""The soak's verdict: the runner's memory is flat when it stays within ±10 % over the second half."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraud_devstack.soak import Sample, report, summarise


def series(rss: list[float]) -> list[Sample]:
    return [
        Sample(
            seconds=10.0 * (i + 1),
            runner_rss_mib=v,
            redis_used_mib=50.0,
            redis_rss_mib=60.0,
            produced=1000 * (i + 1),
            processed=1000 * (i + 1) - 50,
        )
        for i, v in enumerate(rss)
    ]


def test_warm_up_growth_in_the_first_half_is_not_counted_against_flatness() -> None:
    summary = summarise(series([100, 130, 150, 152, 150, 151, 153, 152]), rate=100)
    assert summary["runner_rss_flat"]
    assert summary["runner_rss_mib"]["second_half"]["mean"] == pytest.approx(151.5)
    assert summary["processed_per_s"] == pytest.approx(7950 / 80)
    assert summary["max_lag"] == 50


def test_steady_growth_in_the_second_half_is_a_leak() -> None:
    summary = summarise(series([100, 105, 110, 115, 120, 140, 160, 180]), rate=100)
    assert not summary["runner_rss_flat"]
    assert summary["runner_rss_growth_second_half_mib"] == pytest.approx(180 - 115)
    assert "NOT within" in report(summary, Path("soak.png"))


def test_too_short_a_run_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4 samples"):
        summarise(series([100, 100, 100]), rate=100)
