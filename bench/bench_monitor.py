"""Monitor benchmark: false alarms without drift, detection delay with a known drift, job cost.

    python -m bench.bench_monitor [--seeds 3]

SYNTHETIC simulated transactions (300 cards, 1,500 terminals, 70 days). A logistic regression is
trained on days 30-36 (after the 30-day card windows fill), its reference profile taken on days
37-43; then 24-hour windows ending every hour from day 44 are tested, as the hourly Lambda does.
The features are computed offline (the stream computes the same values: the parity tests); the
same data is generated again with every card spending 1.5x from day 56 to measure how many hours
after the change the first window is flagged. Finally the monitor job runs over a scoring log of
the whole period written to a directory, to time reading and testing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import write_results
from fraud_core.event_log import SCORING, EventLog, Logs
from fraud_core.manifest import ModelManifest, Thresholds
from fraud_core.monitoring.job import DAY, MonitorConfig, run_monitor, window_drift
from fraud_core.monitoring.profile import build_profile
from fraud_core.monitoring.rows import Scored
from fraud_core.scores import published_scores
from fraud_core.shapes.simulated import SIMULATED
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_training.entity_offline import entity_features
from fraud_training.models import make_model
from fraud_training.simulator import SimulationConfig, simulate

DAYS, DRIFT_DAY, FIRST_TESTED = 70, 56, 44


def _world(seed: int, drift_day: int | None) -> tuple[ModelManifest, Scored, Any]:
    frame = simulate(
        SimulationConfig(customers=300, terminals=1_500, days=DAYS, seed=seed, drift_day=drift_day)
    )
    X = entity_features(frame).to_numpy(np.float64)
    y = frame["is_fraud"].to_numpy()
    start = frame["tx_datetime"].min().normalize()
    day = (frame["tx_datetime"] - start).dt.days.to_numpy()
    train, ref = (day >= 30) & (day < 37), (day >= 37) & (day < 44)
    model = make_model("logreg", seed=0).fit(X[train].astype(np.float32), y[train])
    scores = published_scores(model.predict_proba(X.astype(np.float32))[:, 1])
    review = float(np.quantile(scores[ref], 0.97))
    ids = {
        "card_id": np.asarray(frame["customer_id"], dtype=str),
        "terminal_id": np.asarray(frame["terminal_id"], dtype=str),
    }
    manifest = ModelManifest(
        name="bench-monitor",
        version="v1",
        created_at="2026-01-01T00:00:00+00:00",
        model_type="logreg",
        schema_name="simulated",
        features=list(SIMULATED_FEATURE_NAMES),
        raw_scaling={},
        explain_baseline=[0.0] * len(SIMULATED_FEATURE_NAMES),
        thresholds=Thresholds(review=review, decline=max(review, 0.9)),
        reference=build_profile(
            SIMULATED_FEATURE_NAMES,
            X[ref],
            scores[ref],
            entities={f: ids[key][ref] for f, key in SIMULATED.feature_entities.items()},
        ),
    )
    seconds = (frame["tx_datetime"] - start).dt.total_seconds().to_numpy()
    alert = scores >= review
    data = Scored(
        ids=np.asarray(frame["transaction_id"], dtype=str),
        event_time=seconds,
        card=np.asarray(frame["customer_id"], dtype=str),
        score=scores,
        alert=alert,
        decision=np.where(alert, "review", "approve"),
        features=X.astype(np.float32).astype(np.float64),
        entities=ids,
    )
    return manifest, data, frame


def _hourly(manifest: ModelManifest, data: Scored, config: MonitorConfig) -> list[tuple[float, bool]]:
    """(window end in days, drift) for 24-hour windows ending every hour from FIRST_TESTED + 1."""
    out = []
    for end_hour in range((FIRST_TESTED + 1) * 24, DAYS * 24 + 1):
        end = end_hour * 3600.0
        mask = (data.event_time > end - DAY) & (data.event_time <= end)
        out.append((end / DAY, bool(window_drift(manifest, data, mask, config)["drift"])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(width=160)
    config = MonitorConfig()
    rows: list[dict[str, Any]] = []
    for seed in range(1, args.seeds + 1):
        manifest, data, _ = _world(seed, None)
        quiet = _hourly(manifest, data, config)
        daily = [flag for end, flag in quiet if abs(end - round(end)) < 1e-9]
        manifest_d, data_d, _ = _world(seed, DRIFT_DAY)
        drifted = _hourly(manifest_d, data_d, config)
        before = [flag for end, flag in drifted if end <= DRIFT_DAY]
        after = [end for end, flag in drifted if end > DRIFT_DAY and flag]
        delay_hours = (after[0] - DRIFT_DAY) * 24 if after else None
        rows.append(
            {
                "seed": seed,
                "transactions_per_day": float(len(data.ids) / DAYS),
                "hourly_windows_no_drift": len(quiet),
                "false_alarms_hourly": int(sum(f for _, f in quiet)),
                "daily_windows_no_drift": len(daily),
                "false_alarms_daily": int(sum(daily)),
                "windows_before_change": len(before),
                "false_alarms_before_change": int(sum(before)),
                "detection_delay_hours": delay_hours,
                "flagged_share_after_change": float(
                    np.mean([f for end, f in drifted if end >= DRIFT_DAY + 1]) if drifted else 0.0
                ),
            }
        )
    # the job itself: write the no-drift world's scoring log as daily objects, then monitor it
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog.at(tmp, SCORING)
        day = np.floor(data.event_time / DAY).astype(int)
        for d in np.unique(day):
            idx = np.flatnonzero(day == d)
            log.append(
                [
                    {
                        "transaction_id": data.ids[i],
                        "event_time": float(data.event_time[i]),
                        "scored_at": float(data.event_time[i]),
                        "card_id": data.card[i],
                        "model_version": "v1",
                        "fraud_score": float(data.score[i]),
                        "decision": str(data.decision[i]),
                        "features": dict(
                            zip(SIMULATED_FEATURE_NAMES, data.features[i].tolist(), strict=True)
                        ),
                    }
                    for i in idx
                ],
                name=f"day-{d}",
                when=float(d * DAY),
            )
        started = time.perf_counter()
        report = run_monitor(Logs.at(tmp), manifest, MonitorConfig(windows=24, lookback_days=None))
        job_seconds = time.perf_counter() - started
        logged = report["read"]["scoring_rows"]
    table = Table(
        title="monitor: false alarms (no drift) and detection delay (spending x1.5 from day 56), alpha 0.001"
    )
    for column in ("seed", "tx/day", "hourly windows", "false alarms", "daily windows", "false alarms",
                   "windows before change", "false alarms", "delay (hours)", "flagged after day 1"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["seed"]),
            f"{r['transactions_per_day']:.0f}",
            str(r["hourly_windows_no_drift"]),
            str(r["false_alarms_hourly"]),
            str(r["daily_windows_no_drift"]),
            str(r["false_alarms_daily"]),
            str(r["windows_before_change"]),
            str(r["false_alarms_before_change"]),
            "-" if r["detection_delay_hours"] is None else f"{r['detection_delay_hours']:.0f}",
            f"{r['flagged_share_after_change']:.0%}",
        )
    console.print(table)
    console.print(
        f"monitor job over a {logged:,}-row scoring log (local directory, 24 windows + realised): {job_seconds:.1f} s"
    )
    path = write_results(
        "monitor", {"alpha": config.alpha, "seeds": rows, "job": {"rows": logged, "seconds": job_seconds}}
    )
    console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
