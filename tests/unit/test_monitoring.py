"""Monitoring statistics pinned to hand-computed values, thresholds that follow the sample size,
realised metrics on label-complete days only, and a monitor that reports bad logs instead of crashing."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fraud_core.event_log import Logs
from fraud_core.manifest import ModelManifest, Thresholds
from fraud_core.monitoring.drift import (
    chi2_quantile,
    ks_statistic,
    ks_threshold,
    psi,
    psi_threshold,
    reference_cdf,
)
from fraud_core.monitoring.job import (
    DAY,
    MonitorConfig,
    NothingToMonitorError,
    emf_values,
    run_monitor,
    window_drift,
    write_report,
)
from fraud_core.monitoring.metrics import average_precision, card_precision_at_k
from fraud_core.monitoring.profile import SCORE, build_profile, reference_bins
from fraud_core.monitoring.rows import scored_rows
from fraud_training import handbook


def test_psi_of_hand_computed_counts() -> None:
    # window counts 1, 1, 2 smoothed by 0.5 each: shares 1.5/5.5, 1.5/5.5, 2.5/5.5
    a = np.array([1.5, 1.5, 2.5]) / 5.5
    e = np.array([0.25, 0.25, 0.5])
    assert psi(e, np.array([1, 1, 2])) == pytest.approx(0.008287, abs=1e-6)
    assert psi(e, np.array([1, 1, 2])) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert psi(e, np.array([2500, 2500, 5000])) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(("p", "dof", "table"), [(0.99, 9, 21.666), (0.95, 4, 9.488), (0.999, 26, 54.052)])
def test_chi2_quantile_matches_the_table(p: float, dof: int, table: float) -> None:
    assert chi2_quantile(p, dof) == pytest.approx(table, rel=0.005)


def test_psi_threshold_shrinks_with_the_window() -> None:
    small, large = psi_threshold(10, 50, 10_000, 0.01), psi_threshold(10, 50_000, 10_000, 0.01)
    assert small > 0.25 > 0.1 > large  # a fixed 0.1 / 0.25 is wrong at both ends
    assert small == pytest.approx(21.666 * (1 / 50 + 1 / 10_000), rel=0.005)


def test_reference_cdf_is_exact_at_atoms_and_linear_between() -> None:
    q = np.array([0.0, 0.0, 0.0, 0.5, 1.0])  # probabilities 0, .25, .5, .75, 1
    assert reference_cdf(q, np.array([-1.0, 0.0, 0.25, 0.5, 2.0])).tolist() == [0.0, 0.5, 0.625, 0.75, 1.0]


def test_ks_against_a_uniform_reference() -> None:
    ref = reference_bins(np.linspace(0, 1, 100_001), quantiles=1001)
    assert ks_statistic(ref, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(0.6, abs=1e-3)
    assert ks_statistic(ref, np.linspace(0, 1, 1001)) < 0.002
    assert ks_threshold(100, 10**6, 0.05, resolution=0.0) == pytest.approx(0.1358, abs=1e-3)


def test_reference_bins_merge_small_and_empty_bins() -> None:
    binary = reference_bins(np.r_[np.zeros(700), np.ones(300)])
    assert binary.proportions == pytest.approx([0.7, 0.3])
    assert reference_bins(np.full(50, 3.0)).proportions == [1.0]
    uniform = reference_bins(np.arange(1000.0))
    assert len(uniform.proportions) == 10 and all(p == pytest.approx(0.1) for p in uniform.proportions)
    lumpy = reference_bins(np.r_[np.zeros(995), np.arange(5.0) + 1])  # 0.5 % outside the atom
    assert min(lumpy.proportions) >= 0.01 or lumpy.proportions == [1.0]


def _manifest(profile: dict[str, Any], *, review: float = 0.5, test_cp: float | None = None) -> ModelManifest:
    return ModelManifest(
        name="m",
        version="v1",
        created_at="2026-01-01T00:00:00+00:00",
        model_type="logreg",
        schema_name="simulated",
        features=["a", "b"],
        raw_scaling={},
        explain_baseline=[0.0, 0.0],
        thresholds=Thresholds(review=review, decline=0.9),
        metrics={"test": {"card_precision_at_100": test_cp}} if test_cp is not None else {},
        reference=profile,
    )


def _draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    features = np.c_[rng.normal(shift, 1.0, n), rng.poisson(2.0, n).astype(float)]
    scores = 1.0 / (1.0 + np.exp(-(features[:, 0] + 0.3 * features[:, 1] - 4.0)))
    return features, scores


def _window(features: np.ndarray, scores: np.ndarray, review: float) -> Any:
    rows = [
        {
            "transaction_id": str(i),
            "event_time": 1.0,
            "card_id": "c",
            "fraud_score": float(s),
            "decision": "review" if s >= review else "approve",
            "model_version": "v1",
            "features": {"a": float(f[0]), "b": float(f[1])},
        }
        for i, (f, s) in enumerate(zip(features, scores, strict=True))
    ]
    counts = dict.fromkeys(("malformed_rows", "other_model_versions", "duplicate_rows"), 0)
    return scored_rows(rows, ["a", "b"], "v1", counts)


def test_sample_size_thresholds_keep_false_alarms_under_one_percent() -> None:
    rng = np.random.default_rng(7)
    features, scores = _draw(rng, 50_000)
    manifest = _manifest(build_profile(["a", "b"], features, scores), review=0.2)
    config = MonitorConfig()  # alpha 0.001 per window
    alarms, fixed_rule = 0, 0
    for i in range(200):
        n = (100, 1_000, 5_000)[i % 3]
        data = _window(*_draw(rng, n), review=0.2)
        result = window_drift(manifest, data, np.ones(n, dtype=bool), config)
        alarms += result["drift"]
        fixed_rule += any(f["psi"] > 0.1 for f in result["features"].values())
    assert alarms <= 2, f"{alarms} false alarms in 200 windows without drift"
    assert fixed_rule > 2  # the fixed PSI 0.1 rule fires on small windows


def test_a_shift_is_flagged_on_the_shifted_feature() -> None:
    rng = np.random.default_rng(8)
    features, scores = _draw(rng, 50_000)
    manifest = _manifest(build_profile(["a", "b"], features, scores), review=0.2)
    result = window_drift(
        manifest, _window(*_draw(rng, 2_000, shift=0.3), review=0.2), np.ones(2_000, bool), MonitorConfig()
    )
    assert result["drift"]
    assert "feature:a" in result["flags"] and "feature:b" not in result["flags"]


def test_average_precision_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2_000) < 0.05).astype(np.int64)
    score = np.round(rng.random(2_000) * 0.7 + 0.3 * y, 2)  # many ties
    assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert average_precision(np.zeros(5, np.int64), np.arange(5.0)) is None


def test_card_precision_equals_the_training_protocol() -> None:
    rng = np.random.default_rng(4)
    n = 5_000
    day = rng.integers(0, 7, n)
    card = rng.integers(0, 400, n)
    y = (rng.random(n) < 0.03).astype(np.int64)
    score = np.round(rng.random(n) * 0.6 + 0.4 * y * rng.random(n), 3)
    mean, per_day = card_precision_at_k(day, card.astype(str), y, score, k=20)
    offline_mean, offline_per_day = handbook.card_precision_at_k(day, card, y, score, k=20)
    assert per_day == offline_per_day
    assert mean == pytest.approx(offline_mean)


def test_card_detected_on_day_one_leaves_day_two() -> None:
    day = np.array([0, 0, 1, 1])
    card = np.array(["x", "y", "x", "y"])
    y = np.array([1, 0, 1, 1])
    score = np.array([0.9, 0.1, 0.9, 0.2])
    assert card_precision_at_k(day, card, y, score, k=1)[1] == [1.0, 1.0]  # day 2: y, not x again


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in rows)))


def _log_day(root: Path, day: int, rows: list[dict[str, Any]], name: str = "b") -> None:
    _write(root / f"scoring-log/dt=2026-11-29/hour=00/{name}{day}.jsonl.gz", rows)


def _rows(day: int, n: int, *, fraud_every: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"d{day}-{i}",
            "event_time": day * DAY + i,
            "scored_at": day * DAY + i,
            "card_id": f"c{i}",
            "fraud_score": 0.9 if fraud_every and i % fraud_every == 0 else 0.1,
            "decision": "review" if fraud_every and i % fraud_every == 0 else "approve",
            "model_version": "v1",
            "features": {"a": 0.0, "b": 1.0},
        }
        for i in range(n)
    ]


def test_realised_metrics_only_on_label_complete_days(tmp_path: Path) -> None:
    for d in range(10):
        _log_day(tmp_path, d, _rows(d, 50, fraud_every=10))
    labels = [{"transaction_id": f"d{d}-0", "is_fraud": True, "received_at": 0.0} for d in range(10)]
    _write(tmp_path / "labels/dt=2026-11-29/hour=00/l.jsonl.gz", labels)
    config = MonitorConfig(label_delay_days=7, lookback_days=None, as_of=10 * DAY)
    report = run_monitor(Logs.at(str(tmp_path)), None, config, now=0.0)
    assert report["realised"]["days"] == ["1970-01-01", "1970-01-02", "1970-01-03"]
    assert report["realised"]["transactions"] == 150
    assert report["realised"]["frauds"] == 3 and report["realised"]["labelled"] == 3
    assert report["realised"]["alert_precision"] == pytest.approx(3 / 15)


def test_bad_logs_are_counted_and_reported_never_a_crash(tmp_path: Path) -> None:
    _log_day(tmp_path, 0, [*_rows(0, 20), {"transaction_id": 5}, _rows(0, 1)[0]])
    _log_day(tmp_path, 1, _rows(0, 3), name="redelivered")  # the same rows in another object
    (tmp_path / "scoring-log/dt=2026-11-29/hour=00/torn.jsonl.gz").write_bytes(b"\x1f\x8b\x08truncated")
    labels = [
        {"transaction_id": "d0-1", "is_fraud": True, "received_at": 1.0},
        {"transaction_id": "d0-1", "is_fraud": False, "received_at": 2.0},  # a correction
        {"transaction_id": "nobody", "is_fraud": True, "received_at": 1.0},
        {"is_fraud": "yes"},
    ]
    _write(tmp_path / "labels/dt=2026-11-29/hour=00/l.jsonl.gz", labels)
    manifest = _manifest({})  # trained before monitoring: no reference profile
    report = run_monitor(Logs.at(str(tmp_path)), manifest, MonitorConfig(lookback_days=None), now=0.0)
    read = report["read"]
    assert read["corrupt_objects"] == 1 and read["malformed_rows"] == 1
    assert read["duplicate_rows"] == 4 and read["duplicate_labels"] == 1
    assert read["labels_for_unknown_transactions"] == 1 and read["malformed_labels"] == 1
    assert report["windows"][-1]["tested"] is False
    assert any("no reference profile" in p for p in report["problems"])
    assert report["realised"]["why_not"] == "no label-complete day in the logs yet"
    assert math.isfinite(emf_values(report)["LogProblems"])
    key = write_report(Logs.at(str(tmp_path)), report)
    assert json.loads((tmp_path / key).read_text())["read"] == read


def test_an_empty_window_is_reported_and_empty_logs_are_an_error(tmp_path: Path) -> None:
    _log_day(tmp_path, 0, _rows(0, 200))
    rng = np.random.default_rng(1)
    features, scores = _draw(rng, 1000)
    manifest = _manifest(build_profile(["a", "b"], features, scores))
    config = MonitorConfig(lookback_days=None, windows=3, window_hours=1.0, as_of=3 * 3600.0)
    report = run_monitor(Logs.at(str(tmp_path)), manifest, config, now=0.0)
    # windows are (start, end]: the transaction at 0 s belongs to the window before the first
    assert [w["transactions"] for w in report["windows"]] == [199, 0, 0]
    assert "fewer than" in report["windows"][-1]["why_not"]
    assert SCORE in manifest.reference
    with pytest.raises(NothingToMonitorError):
        run_monitor(Logs.at(str(tmp_path / "nothing")), manifest, config, now=0.0)


def test_per_card_features_count_cards_not_transactions() -> None:
    # 300 cards, each with its own slowly varying 30-day average: a window's transactions are
    # clustered by card, so counting transactions as independent draws fires on no drift at all
    rng = np.random.default_rng(9)
    level = rng.lognormal(3.0, 0.8, 300)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        cards = rng.integers(0, 300, n)
        return cards, level[cards] * rng.normal(1.0, 0.02, n)

    ref_cards, ref_values = draw(4_000)
    scores = rng.random(4_000)
    name = "card_avg_amount_30d"
    profile = build_profile([name], ref_values[:, None], scores, entities={name: ref_cards})
    assert profile[name].entities == 300
    manifest = ModelManifest(
        **{**_manifest({}).model_dump(exclude={"reference"}), "features": [name], "explain_baseline": [0.0]},
        reference=profile,
    )
    by_transactions = by_cards = 0
    for _ in range(200):
        level *= rng.normal(1.0, 0.01, 300)  # each card drifts a little, the population does not
        cards, values = draw(600)
        rows = [
            {
                "transaction_id": str(i),
                "event_time": 1.0,
                "card_id": str(c),
                "fraud_score": float(rng.random()),
                "decision": "approve",
                "features": {name: float(v)},
            }
            for i, (c, v) in enumerate(zip(cards, values, strict=True))
        ]
        counts = dict.fromkeys(("malformed_rows", "other_model_versions", "duplicate_rows"), 0)
        data = scored_rows(rows, [name], None, counts)
        result = window_drift(manifest, data, np.ones(600, bool), MonitorConfig())
        by_cards += "feature:" + name in result["flags"]
        f = result["features"][name]
        n_transactions_limit = psi_threshold(
            len(profile[name].proportions), 600, 4_000, result["alpha_per_test"]
        )
        by_transactions += f["psi"] > n_transactions_limit
        assert f["sample_size"] <= 300
    assert by_cards <= 2
    assert by_transactions > 20


def test_daily_tables_from_duckdb(tmp_path: Path) -> None:
    from fraud_training.monitor import daily

    for d in range(10):
        _log_day(tmp_path, d, _rows(d, 50, fraud_every=10))
    (tmp_path / "scoring-log/dt=2026-11-29/hour=00/torn.jsonl.gz").write_bytes(b"\x1f\x8b\x08truncated")
    rows, corrupt = daily(str(tmp_path), tmp_path / "cache", label_delay_days=7)
    assert corrupt == ["scoring-log/dt=2026-11-29/hour=00/torn.jsonl.gz"]
    assert [r["transactions"] for r in rows] == [50] * 10
    assert rows[0]["review_rate"] == pytest.approx(0.1) and rows[0]["label_coverage"] == 0.0
    # no label yet: every transaction counts as genuine; metrics only on the 2 days that ended
    # 7 days before the newest event (day 9, 00:00:49)
    assert [r["card_precision_at_100"] for r in rows] == [0.0, 0.0] + [None] * 8
    labels = [{"transaction_id": f"d{d}-0", "is_fraud": True, "received_at": 1.0} for d in range(10)]
    _write(tmp_path / "labels/dt=2026-11-29/hour=00/l.jsonl.gz", labels)
    rows, _ = daily(str(tmp_path), tmp_path / "cache", label_delay_days=7)
    assert rows[0]["frauds"] == 1 and rows[0]["label_coverage"] == pytest.approx(1 / 50)
    assert rows[0]["card_precision_at_100"] == pytest.approx(1 / 100)
    # the fraud shares the top score 0.9 with 4 other transactions: precision 1/5 at full recall
    assert rows[0]["average_precision"] == pytest.approx(0.2)
