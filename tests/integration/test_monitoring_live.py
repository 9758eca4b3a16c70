"""Monitoring end to end on real services: simulated days with a known spending drift replayed
through producer → broker (tansu) → local runner → stream function, labels on their delay, the
scoring and label logs on S3 (moto_server), the monitor from its CLI and its Lambda handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from fraud_core.event_log import Logs
from fraud_core.manifest import Thresholds
from fraud_core.monitoring.job import DAY, MonitorConfig, run_monitor
from fraud_core.monitoring.profile import build_profile
from fraud_core.shapes.simulated import SIMULATED
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_devstack.lambda_context import LocalLambdaContext
from fraud_devstack.services import Service, kill_process, start_process, start_redis
from fraud_devstack.streaming import runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training import handbook
from fraud_training.entity_offline import entity_features
from fraud_training.models import make_model
from fraud_training.simulator import SimulationConfig, simulate
from tests.conftest import publish_simulated_model

MODEL = "sim-monitored"
DAYS, DRIFT_DAY = 50, 46
TRAIN = (30, 37)  # after the 30-day card windows have filled
REFERENCE = (37, 44)  # the week the model would be served on: its drift reference
EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The data, a model trained on it with its reference profile, and its registry."""
    root = tmp_path_factory.mktemp("monitoring")
    frame = simulate(SimulationConfig(customers=150, terminals=800, days=DAYS, seed=11, drift_day=DRIFT_DAY))
    data = root / "sim.parquet"
    frame.to_parquet(data, index=False)
    X = entity_features(frame).to_numpy(np.float64)
    y = frame["is_fraud"].to_numpy()
    day = ((frame["tx_datetime"] - frame["tx_datetime"].min().normalize()).dt.days).to_numpy()
    train = (day >= TRAIN[0]) & (day < TRAIN[1])
    served = (day >= REFERENCE[0]) & (day < REFERENCE[1])
    model = make_model("logreg", seed=0).fit(X[train].astype(np.float32), y[train])
    reference_scores = model.predict_proba(X[served].astype(np.float32))[:, 1]
    review = float(np.quantile(reference_scores, 0.97))
    ids = {"card_id": frame["customer_id"].to_numpy(), "terminal_id": frame["terminal_id"].to_numpy()}
    registry = publish_simulated_model(
        root / "registry",
        X[train].astype(np.float32),
        y[train],
        name=MODEL,
        thresholds=Thresholds(review=review, decline=max(review, 0.9)),
        reference=build_profile(
            SIMULATED_FEATURE_NAMES,
            X[served],
            reference_scores,
            entities={f: ids[key][served] for f, key in SIMULATED.feature_entities.items()},
        ),
        model=model,
    )
    return {"root": root, "data": data, "frame": frame, "features": X, "registry": registry}


def _logs_env(bucket: str) -> dict[str, str]:
    return {"FRAUD_LOG_URI": f"s3://{bucket}/fraud"}


def test_replay_logs_once_and_the_monitor_sees_drift_and_realised_precision(
    world: dict[str, Any],
    kafka_broker: Service,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame: pd.DataFrame = world["frame"]
    bucket = f"logs-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    redis_service = start_redis(log_dir=tmp_path)
    topic = f"mon-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.url, [topic], partitions=1)  # one total order for cards and terminals
    env = {
        **os.environ,
        "FRAUD_REGISTRY_URI": str(world["root"] / "registry"),
        "FRAUD_MODEL_NAME": MODEL,
        "FRAUD_REDIS_URL": redis_service.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "FRAUD_SCORES_TOPIC": "",
        "FRAUD_ALERTS_TOPIC": f"{topic}-alerts",
        "FRAUD_DLQ_TOPIC": f"{topic}-dlq",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **_logs_env(bucket),
    }
    try:
        # GIVEN 50 simulated days (spending x1.5 from day 46) replayed with labels on their 7-day delay
        replay = subprocess.run(
            [sys.executable, "-m", "fraud_devstack.replay", "--data", str(world["data"]), "--topic", topic,
             "--bootstrap-servers", kafka_broker.url],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr

        # WHEN the runner is SIGKILLed mid-stream, then restarted until the topic is drained
        argv = runner_argv(
            bootstrap_servers=kafka_broker.url,
            topic=topic,
            group_id=f"g-{topic}",
            batch_size=500,
            idle_exit=5,
        )
        with (tmp_path / "runner-0.log").open("wb") as out:
            first = start_process(argv, env=env, stdout=out)
            s3 = boto3.client("s3")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and first.poll() is None:
                listed = s3.list_objects_v2(Bucket=bucket, Prefix="fraud/scoring-log/").get("KeyCount", 0)
                if listed >= 20:
                    break
                time.sleep(0.05)
            kill_process(first)
        with (tmp_path / "runner-1.log").open("wb") as out:
            second = subprocess.run(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False
            )
        assert second.returncode == 0, (tmp_path / "runner-1.log").read_text()[-3000:]
    finally:
        redis_service.stop()

    # THEN the scoring log holds every transaction exactly once
    monkeypatch.setenv("FRAUD_LOG_URI", f"s3://{bucket}/fraud")
    logs = Logs.at(f"s3://{bucket}/fraud")
    rows = list(logs.scoring.read())
    ids = [r["transaction_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} transactions logged twice"
    assert set(ids) == set(frame["transaction_id"].astype(str)), "every transaction logged"
    logged = {r["transaction_id"]: r["features"] for r in rows}
    # each float32 input logged in its shortest decimal form: read back onto the float32 grid
    online = np.array(
        [[logged[str(t)][f] for f in SIMULATED_FEATURE_NAMES] for t in frame["transaction_id"]],
        dtype=np.float32,
    )
    # the model's input (float32, the ONNX contract) as the offline definition computes it
    diff = np.abs(online - world["features"].astype(np.float32))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() == 0.0, (
        f"logged features differ from offline: {diff.max()} at row {worst[0]} {SIMULATED_FEATURE_NAMES[worst[1]]}; "
        f"rows differing per feature {dict(zip(SIMULATED_FEATURE_NAMES, (diff > 1e-9).sum(axis=0).tolist(), strict=True))}"
    )
    labels = list(logs.labels.read())
    assert {lb["transaction_id"] for lb in labels} <= set(ids) and len(labels) > len(frame) // 2

    # AND the monitor flags drift in the first daily window after the change, and not before
    _, manifest = world["registry"].current_manifest()
    start = frame["tx_datetime"].min().normalize().timestamp()
    # a day of margin over the 7-day delay: the labels of the last evening's transactions are
    # due after the replay's last transaction, so they never arrive
    config = MonitorConfig(
        window_hours=24,
        windows=DAYS - REFERENCE[1],
        label_delay_days=8,
        lookback_days=None,
        as_of=start + DAYS * DAY,
    )
    report = run_monitor(logs, manifest, config)
    flagged = [w["drift"] for w in report["windows"]]
    print("windows from day", REFERENCE[1], [(w["transactions"], w.get("flags")) for w in report["windows"]])
    assert flagged == [False] * (DRIFT_DAY - REFERENCE[1]) + [True] * (DAYS - DRIFT_DAY), flagged
    assert report["alarms"] and report["alarms"][0].startswith("drift:")
    assert report["read"]["duplicate_rows"] == 0 and report["read"]["corrupt_objects"] == 0

    # AND its realised CP@100 equals the offline Handbook metric of the same predictions and labels
    realised = report["realised"]
    complete = [pd.Timestamp(d).timestamp() for d in realised["days"]]
    assert len(complete) == 7 and realised["label_coverage"] == pytest.approx(1.0)
    by_id = {r["transaction_id"]: r["fraud_score"] for r in rows}
    days = (frame["tx_datetime"].astype("datetime64[s]").astype("int64") // DAY).to_numpy()
    mask = np.isin(days * DAY, complete)
    offline_cp, _ = handbook.card_precision_at_k(
        days[mask],
        frame["customer_id"].to_numpy()[mask],
        frame["is_fraud"].to_numpy()[mask],
        np.array([by_id[str(t)] for t in frame["transaction_id"].to_numpy()[mask]]),
    )
    assert realised["card_precision_at_100"] == pytest.approx(offline_cp, abs=1e-12)
    assert realised["frauds"] == int(frame["is_fraud"].to_numpy()[mask].sum())

    # AND the monitor runs from its CLI (DuckDB daily tables too) and from its Lambda handler
    cli_env = {**env, "FRAUD_LOG_URI": f"s3://{bucket}/fraud"}
    run = subprocess.run(
        [sys.executable, "-m", "fraud_training.monitor", "run", "--windows", "3", "--write"],
        env=cli_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "ALARM: drift" in run.stdout and "written s3://" in run.stdout
    daily = subprocess.run(
        [sys.executable, "-m", "fraud_training.monitor", "daily", "--days", "10", "--cache", str(tmp_path / "cache")],
        env=cli_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert daily.returncode == 0, daily.stderr
    assert str(pd.Timestamp(start + (DAYS - 1) * DAY, unit="s").date()) in daily.stdout
    for key, value in cli_env.items():
        if key.startswith("FRAUD_"):
            monkeypatch.setenv(key, value)
    from fraud_core.settings import get_settings
    from fraud_monitor.handler import lambda_handler

    get_settings.cache_clear()
    event = json.loads((EVENTS / "eventbridge-monitor-schedule.json").read_text())
    result = lambda_handler(event, LocalLambdaContext(function_name="fraud-monitor"))
    assert result["model_version"] == manifest.version
    assert any(a.startswith("drift:") for a in result["alarms"])
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"fraud/{result['report']}")["Body"].read()
    assert json.loads(body)["windows"][-1]["drift"] is True
