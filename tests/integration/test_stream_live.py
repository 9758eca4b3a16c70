"""Producer CLI → tansu (real Kafka protocol) → local event-source runner → stream handler → real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
from kafka import KafkaProducer

from fraud_core.online import keys
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.services import Service, kill_process, start_process, start_redis
from fraud_devstack.streaming import producer_argv, runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training.data import to_records
from tests.conftest import MODEL_NAME, TrainedModel
from tests.reliability.harness import read_topic

ROWS = 600
POISON = [
    b"not json",
    b'{"transaction_id": "p_1", "Amount": "lots"}',
    b"[1,2,3]",
    b'{"transaction_id": "p_2", "V1": NaN}',
]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Service]:
    service = start_redis(log_dir=tmp_path)
    yield service
    service.stop()


@pytest.fixture
def topics(kafka_broker: Service) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{suffix}" for k in ("transactions", "scores", "alerts", "dlq")}
    ensure_topics(kafka_broker.url, names.values())
    return names


@pytest.fixture
def stream_csv(trained: TrainedModel, tmp_path: Path) -> Path:
    frame = trained.frame.head(ROWS).copy()
    frame["card_id"] = [f"c_{i % 37}" for i in range(len(frame))]
    path = tmp_path / "stream.csv"
    frame.to_csv(path, index=False)
    return path


def env_for(trained: TrainedModel, broker: Service, store: Service, topics: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "FRAUD_REGISTRY_URI": str(trained.registry_dir),
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_REDIS_URL": store.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
        "FRAUD_SCORES_TOPIC": topics["scores"],
        "FRAUD_ALERTS_TOPIC": topics["alerts"],
        "FRAUD_DLQ_TOPIC": topics["dlq"],
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def produce(csv: Path, broker: Service, topic: str, env: dict[str, str]) -> None:
    argv = producer_argv(csv, bootstrap_servers=broker.url, topic=topic)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"sent {ROWS:,}, failed 0" in done.stderr


def produce_poison(broker: Service, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=[broker.url])
    for value in POISON:
        producer.send(topic, key=b"poison", value=value)
    producer.flush(30)
    producer.close()


def runner(
    env: dict[str, str], broker: Service, topic: str, *, idle_exit: float, log: Path, batch_size: int = 100
) -> subprocess.Popen[bytes]:
    argv = runner_argv(
        bootstrap_servers=broker.url,
        topic=topic,
        group_id=f"g-{topic}",
        batch_size=batch_size,
        idle_exit=idle_exit,
    )
    with log.open("ab") as out:
        return start_process(argv, env=env, stdout=out)


def expected_decisions(trained: TrainedModel) -> dict[str, str]:
    records = to_records(trained.frame.head(ROWS))
    return {r.transaction_id or "": r.decision for r in trained.scorer().score_batch(records, explain="none")}


def check_exactly_once(
    trained: TrainedModel,
    broker: Service,
    store: Service,
    topics: dict[str, str],
    *,
    alerts_exactly_once: bool = True,
) -> None:
    r = redis.Redis.from_url(store.url)
    expected = expected_decisions(trained)
    stored = {t: json.loads(r.get(keys.RESULT(t)) or b"null") for t in expected}
    assert all(v is not None for v in stored.values()), "every transaction is stored"
    assert {t: v["decision"] for t, v in stored.items()} == expected
    assert all(s == keys.Dedupe.DONE for s in RedisStreamState(r).dedupe_states(sorted(expected)))
    counts = [int(r.hget(keys.CARD(f"c_{i}"), "tx_count") or 0) for i in range(37)]
    assert sum(counts) == ROWS, "card counters count every transaction exactly once"
    frame: pd.DataFrame = trained.frame.head(ROWS)
    assert counts[0] == len(frame.iloc[::37])
    alerts = read_topic(broker.url, topics["alerts"])
    alert_ids = [a["transaction_id"] for a in alerts]
    wanted = sorted(t for t, d in expected.items() if d != "approve")
    if alerts_exactly_once:
        assert sorted(alert_ids) == wanted, "each alert exactly once"
    else:
        # A SIGKILL between the producer's flush and marking the batch done republishes the
        # stored result: alerts are at-least-once (never lost, never for a wrong transaction).
        assert sorted(set(alert_ids)) == wanted, "every alert present, none spurious"
    dlq = read_topic(broker.url, topics["dlq"])
    assert len(dlq) == len(POISON)
    assert sorted(json.loads(json.dumps(d))["value_base64"] for d in dlq)


def test_produce_run_and_score_exactly_once(
    trained: TrainedModel,
    kafka_broker: Service,
    own_redis: Service,
    topics: dict[str, str],
    stream_csv: Path,
    tmp_path: Path,
) -> None:
    env = env_for(trained, kafka_broker, own_redis, topics)
    produce(stream_csv, kafka_broker, topics["transactions"], env)
    produce_poison(kafka_broker, topics["transactions"])
    log = tmp_path / "runner.log"
    proc = runner(env, kafka_broker, topics["transactions"], idle_exit=4, log=log)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert "scored" in log.read_text()
    check_exactly_once(trained, kafka_broker, own_redis, topics)


def test_sigkill_mid_stream_and_restart_loses_and_doubles_nothing(
    trained: TrainedModel,
    kafka_broker: Service,
    own_redis: Service,
    topics: dict[str, str],
    stream_csv: Path,
    tmp_path: Path,
) -> None:
    env = env_for(trained, kafka_broker, own_redis, topics)
    produce(stream_csv, kafka_broker, topics["transactions"], env)
    produce_poison(kafka_broker, topics["transactions"])
    r = redis.Redis.from_url(own_redis.url)
    # WHEN the runner is SIGKILLed twice part-way through, then restarted
    for _ in range(2):
        proc = runner(
            env,
            kafka_broker,
            topics["transactions"],
            idle_exit=30,
            batch_size=40,
            log=tmp_path / "killed.log",
        )
        deadline = time.monotonic() + 60
        before = len(r.keys("fraud:seen:*"))
        while time.monotonic() < deadline and len(r.keys("fraud:seen:*")) < before + 80:
            time.sleep(0.05)
        kill_process(proc)
        proc.wait(10)
    log = tmp_path / "final.log"
    final = runner(env, kafka_broker, topics["transactions"], idle_exit=5, batch_size=40, log=log)
    assert final.wait(timeout=240) == 0, log.read_text()[-3000:]
    # THEN every transaction is scored and stored exactly once, and no alert is lost
    check_exactly_once(trained, kafka_broker, own_redis, topics, alerts_exactly_once=False)
