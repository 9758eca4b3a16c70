"""Training/serving parity: a simulated stream (30 days, a few hundred cards, labels fed back on
their delay) goes producer → tansu → local runner → stream handler → Redis; the feature vector
each transaction was scored with equals the offline pandas computation within 1e-9, for all."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis

from fraud_core.online import keys
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_devstack.services import Service, start_redis
from fraud_devstack.streaming import runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training.entity_offline import entity_features
from fraud_training.simulator import SimulationConfig, simulate
from tests.conftest import publish_simulated_model

MODEL = "sim-parity"


@pytest.fixture
def own_redis(tmp_path: Path) -> Service:
    service = start_redis(log_dir=tmp_path)
    yield service  # type: ignore[misc]
    service.stop()


def test_stream_features_equal_offline_features(
    kafka_broker: Service, own_redis: Service, tmp_path: Path
) -> None:
    # GIVEN 30 simulated days for 300 cards, and a simulated-schema model in a local registry
    frame = simulate(SimulationConfig(customers=300, terminals=600, days=30, seed=5))
    data = tmp_path / "sim.parquet"
    frame.to_parquet(data, index=False)
    offline = entity_features(frame)
    publish_simulated_model(
        tmp_path / "reg", offline.to_numpy(np.float32), frame["is_fraud"].to_numpy(), name=MODEL
    )
    topic = f"sim-{uuid.uuid4().hex[:8]}"
    ensure_topics(
        kafka_broker.url, [topic], partitions=1
    )  # one partition: one total order for cards AND terminals
    env = {
        **os.environ,
        "FRAUD_REGISTRY_URI": str(tmp_path / "reg"),
        "FRAUD_MODEL_NAME": MODEL,
        "FRAUD_REDIS_URL": own_redis.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "FRAUD_SCORES_TOPIC": "",
        "FRAUD_ALERTS_TOPIC": f"{topic}-alerts",
        "FRAUD_DLQ_TOPIC": f"{topic}-dlq",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }

    # WHEN the stream is replayed with labels on their delay and consumed by the local runner
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraud_devstack.replay",
            "--data",
            str(data),
            "--topic",
            topic,
            "--bootstrap-servers",
            kafka_broker.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    log = tmp_path / "runner.log"
    argv = runner_argv(
        bootstrap_servers=kafka_broker.url, topic=topic, group_id=f"g-{topic}", batch_size=500, idle_exit=4
    )
    with log.open("wb") as out:
        runner = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert runner.returncode == 0, log.read_text()[-3000:]

    # THEN every transaction was scored with exactly the offline feature vector
    r = redis.Redis.from_url(own_redis.url)
    pipe = r.pipeline(transaction=False)
    for tid in frame["transaction_id"]:
        pipe.get(keys.RESULT(str(tid)))
    stored = pipe.execute()
    assert all(s is not None for s in stored), f"{sum(s is None for s in stored)} transactions not scored"
    online = np.array([[orjson.loads(s)["features"][f] for f in SIMULATED_FEATURE_NAMES] for s in stored])
    diff = np.abs(online - offline.to_numpy())
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() <= 1e-9, (
        f"max |online - offline| = {diff.max()} at row {worst[0]}, {SIMULATED_FEATURE_NAMES[worst[1]]}"
    )
    assert len(frame) > 10_000
    assert (offline["terminal_risk_30d"] > 0).sum() > 100, "labels reached the terminal windows"

    # AND the online state stays bounded: report bytes per card and per terminal (README numbers)
    def mean_bytes(pattern: str) -> float:
        keys = list(r.scan_iter(match=pattern, count=1000))
        return float(np.mean([r.memory_usage(k) or 0 for k in keys])) if keys else 0.0

    card_bytes = mean_bytes("fraud:cw:*")
    terminal_bytes = mean_bytes("fraud:tw:*") + mean_bytes("fraud:tf:*")
    print(
        f"online state after {len(frame):,} transactions / 30 days: {card_bytes:,.0f} bytes per card, "
        f"{terminal_bytes:,.0f} bytes per terminal (windows + fraud set)"
    )
    assert all(r.ttl(k) > 0 for k in list(r.scan_iter(match="fraud:cw:*", count=1000))[:50]), (
        "every window key has a TTL"
    )
