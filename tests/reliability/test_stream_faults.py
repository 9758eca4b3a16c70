"""Stream scenarios: duplicate delivery, consumer crashes, Redis outage, broker restart, poison."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from fraud_core.online import keys
from fraud_core.online.client import redis_client
from fraud_core.stream.ports import Topics
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import KafkaSink
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.services import Service, start_redis, start_tansu
from fraud_devstack.uvicorn_thread import serve_in_thread
from fraud_training.data import to_records
from fraud_training.datasets import kaggle_like
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches
from tests.reliability.conftest import scale
from tests.reliability.harness import StreamRig, with_cards


def dataset(n: int, tmp: Path, *, seed: int = 11) -> tuple[Path, list[str], dict[str, int]]:
    frame = with_cards(kaggle_like(max(n, 100), seed=seed, fraud_rate=0.02).head(n))
    csv = tmp / "stream.csv"
    frame.to_csv(csv, index=False)
    ids = [f"t_{i}" for i in range(n)]
    return csv, ids, dict(Counter(frame["card_id"]))


def expected_alerts(model: TrainedModel, csv: Path) -> set[str]:
    import pandas as pd

    frame = pd.read_csv(csv)
    records = [{**r, "transaction_id": f"t_{i}"} for i, r in enumerate(to_records(frame))]
    return {
        r.transaction_id or ""
        for r in model.scorer().score_batch(records, explain="none")
        if r.decision != "approve"
    }


def rig(model: TrainedModel, kafka_broker: Service, store: Service, tmp: Path, **extra: str) -> StreamRig:
    return StreamRig(
        registry_dir=model.registry_dir,
        model_name=MODEL_NAME,
        broker_url=kafka_broker.url,
        redis_url=store.url,
        workdir=tmp,
        extra_env=extra or None,
    )


def test_duplicate_delivery_changes_nothing(
    model: TrainedModel, kafka_broker: Service, tmp_path: Path, record: Any
) -> None:
    # GIVEN a 10,000-event batch handled once
    store = start_redis(log_dir=tmp_path)
    try:
        r = rig(model, kafka_broker, store, tmp_path)
        n = 10_000
        frame = with_cards(kaggle_like(n, seed=5, fraud_rate=0.02))
        records = [{**rec, "card_id": c} for rec, c in zip(to_records(frame), frame["card_id"], strict=True)]
        event = build_event(
            [
                {"topic": "transactions", "partition": i % 2, "offset": i, "value": json.dumps(rec).encode()}
                for i, rec in enumerate(records)
            ]
        )
        client = redis_client(store.url, timeout_seconds=5)
        sink = KafkaSink(kafka_broker.url)
        processor = StreamProcessor(
            model.scorer(),
            RedisStreamState(client),
            sink,
            topics=Topics(scores=r.topics["scores"], alerts=r.topics["alerts"], dlq=r.topics["dlq"]),
        )
        first = processor.process(event)

        def snapshot() -> tuple[Any, ...]:
            pipe = client.pipeline(transaction=False)
            for rec in records:
                pipe.get(keys.RESULT(rec["transaction_id"]))
                pipe.get(keys.SEEN(rec["transaction_id"]))
            cards = {c: client.hgetall(keys.CARD(c)) for c in set(frame["card_id"])}
            return tuple(pipe.execute()), tuple(sorted(cards.items()))

        before = snapshot()
        # WHEN the very same batch is delivered again
        second = processor.process(event)
        after = snapshot()
        sink.close()
        alerts = r.read_topic("alerts")
        passed = before == after and second.scored == 0 and len(alerts) == first.alerts and not first.failures
        record(
            scenario="1 duplicate delivery",
            events_in=2 * n,
            scored=first.scored,
            dlq=0,
            lost=n - first.scored,
            double_counted=second.scored,
            http_5xx="-",
            peak_memory="-",
            passed=passed,
        )
        # THEN features, stored results and alerts are identical to handling it once
        assert before == after
        assert second.scored == 0
        assert second.duplicates == n
        assert len(alerts) == first.alerts
    finally:
        store.stop()


def test_consumer_crashes_lose_and_double_nothing(
    model: TrainedModel, kafka_broker: Service, tmp_path: Path, record: Any
) -> None:
    n = scale(3_000, 100_000)
    store = start_redis(log_dir=tmp_path)
    try:
        csv, ids, cards = dataset(n, tmp_path)
        r = rig(model, kafka_broker, store, tmp_path)
        r.produce_csv(csv)
        rnd = random.Random(7)
        kills = 0
        for _ in range(3):  # SIGKILL at a random point of progress, three times
            target = r.seen_count() + rnd.randint(n // 20, n // 8)
            proc = r.start_runner(batch_size=scale(100, 500), idle_exit=60)
            deadline = time.monotonic() + 300
            while r.seen_count() < target and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(rnd.uniform(0.01, 0.2))
            r.kill(proc)
            kills += 1
        r.run_to_completion(batch_size=scale(100, 500), idle_exit=6, timeout=3600)
        audit = r.audit(ids, cards)
        alerts_ok = {a for a in expected_alerts(model, csv)} == set(
            a["transaction_id"] for a in r.read_topic("alerts")
        )
        record(
            scenario=f"2 consumer SIGKILL x{kills}",
            events_in=n,
            scored=audit.scored,
            dlq=audit.dlq,
            lost=audit.lost,
            double_counted=audit.double_counted,
            http_5xx="-",
            peak_memory="-",
            passed=audit.exactly_once and alerts_ok,
        )
        assert audit.exactly_once, audit
        assert alerts_ok, "every expected alert present, none spurious"
    finally:
        store.stop()


def test_redis_outage_mid_stream(
    model: TrainedModel, kafka_broker: Service, tmp_path: Path, record: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = scale(3_000, 20_000)
    password = "rel-" + "x" * 8 + "-secret"
    store = start_redis(log_dir=tmp_path, data_dir=tmp_path / "aof", password=password)
    api_key = "api-key-that-must-not-be-logged"
    try:
        csv, ids, cards = dataset(n, tmp_path, seed=12)
        r = rig(model, kafka_broker, store, tmp_path, FRAUD_API_KEY=api_key)
        r.produce_csv(csv)
        for key, value in {
            "FRAUD_REGISTRY_URI": str(model.registry_dir),
            "FRAUD_MODEL_NAME": MODEL_NAME,
            "FRAUD_REDIS_URL": store.url,
            "FRAUD_REDIS_TIMEOUT_SECONDS": "0.3",
        }.items():
            monkeypatch.setenv(key, value)
        clear_caches()
        from fraud_api.main import create_app

        score_body = {"Time": 10.0, "Amount": 5.0, "card_id": "c_1", **{f"V{i}": 0.1 for i in range(1, 29)}}
        statuses: Counter[int] = Counter()
        degraded_seen = False
        with serve_in_thread(create_app()) as url, httpx.Client(base_url=url, timeout=10) as http:
            proc = r.start_runner(batch_size=scale(100, 500), idle_exit=10)
            while r.seen_count() < n // 4 and proc.poll() is None:
                time.sleep(0.05)
            store.stop()  # the outage: a few seconds without Redis while the runner consumes
            outage_end = time.monotonic() + 4
            while time.monotonic() < outage_end:
                response = http.post("/v1/score", json=score_body)
                statuses[response.status_code] += 1
                degraded_seen |= response.status_code == 200 and bool(response.json()["warnings"])
                time.sleep(0.1)
            restarted = start_redis(
                store.port, log_dir=tmp_path, data_dir=tmp_path / "aof", password=password
            )
            try:
                recovered = False
                recovery_deadline = time.monotonic() + 5
                while not recovered and time.monotonic() < recovery_deadline:
                    recovered = http.post("/v1/score", json=score_body).json()["warnings"] == []
                assert proc.wait(timeout=1800) == 0, r.logs_text()[-3000:]
                audit = r.audit(ids, cards)
            finally:
                restarted.stop()
        logs = r.logs_text()
        retried = "retried batches" in logs and " 0 retried batches" not in logs
        no_secrets = password not in logs and api_key not in logs
        http_5xx = sum(c for s, c in statuses.items() if s >= 500)
        passed = (
            audit.exactly_once and degraded_seen and recovered and http_5xx == 0 and retried and no_secrets
        )
        record(
            scenario="3 redis outage mid-stream",
            events_in=n,
            scored=audit.scored,
            dlq=audit.dlq,
            lost=audit.lost,
            double_counted=audit.double_counted,
            http_5xx=http_5xx,
            peak_memory="-",
            passed=passed,
        )
        assert audit.exactly_once, audit
        assert degraded_seen and http_5xx == 0, statuses
        assert recovered
        assert retried, "the handler reported failures and the runner retried"
        assert no_secrets, "a configured secret appeared in the logs"
    finally:
        store.stop()
        clear_caches()


def test_broker_restart_with_durable_storage(
    model: TrainedModel, moto_server: Service, tmp_path: Path, record: Any
) -> None:
    n = scale(2_000, 20_000)
    bucket = f"tansu-{random.randrange(10**9)}"
    s3_env = {
        "AWS_ENDPOINT": moto_server.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=moto_server.url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    durable = start_tansu(log_dir=tmp_path, storage=f"s3://{bucket}/", env=s3_env)
    store = start_redis(log_dir=tmp_path)
    try:
        csv, ids, cards = dataset(n, tmp_path, seed=13)
        r = rig(model, durable, store, tmp_path)
        r.produce_csv(csv)
        proc = r.start_runner(batch_size=scale(100, 500), idle_exit=15)
        while r.seen_count() < n // 3 and proc.poll() is None:
            time.sleep(0.05)
        durable.stop()
        time.sleep(2)
        durable = start_tansu(durable.port, log_dir=tmp_path, storage=f"s3://{bucket}/", env=s3_env)
        assert proc.wait(timeout=1800) == 0, r.logs_text()[-3000:]
        audit = r.audit(ids, cards)
        record(
            scenario="4 broker restart (s3 storage)",
            events_in=n,
            scored=audit.scored,
            dlq=audit.dlq,
            lost=audit.lost,
            double_counted=audit.double_counted,
            http_5xx="-",
            peak_memory="-",
            passed=audit.exactly_once,
        )
        assert audit.exactly_once, audit
    finally:
        durable.stop()
        store.stop()


POISON = [
    b"not json at all",
    b'{"transaction_id": "p", "Time": "ten", "Amount": 1}',
    b'{"transaction_id": "p", "Time": 1.0}',
    b'{"transaction_id": "p", "Time": NaN, "Amount": 1}',
    b'{"V1": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"pad": "' + b"x" * 100_000 + b'"}',
    '{"transaction_id": "caf\u00e9"}'.encode("latin-1"),
    b"[1, 2, 3]",
    b"",
]


def test_poison_one_percent(model: TrainedModel, kafka_broker: Service, tmp_path: Path, record: Any) -> None:
    n = scale(2_000, 50_000)
    store = start_redis(log_dir=tmp_path)
    try:
        csv, ids, cards = dataset(n, tmp_path, seed=14)
        r = rig(model, kafka_broker, store, tmp_path)
        r.produce_csv(csv)
        poison = [POISON[i % len(POISON)] for i in range(n // 100)]
        r.produce_raw(poison)
        r.run_to_completion(batch_size=scale(200, 1000), idle_exit=5)
        audit = r.audit(ids, cards)
        dlq = r.read_topic("dlq")
        reasons = all(d.get("reason") for d in dlq)
        passed = audit.exactly_once and len(dlq) == len(poison) and reasons
        record(
            scenario="5 poison 1%",
            events_in=n + len(poison),
            scored=audit.scored,
            dlq=len(dlq),
            lost=audit.lost,
            double_counted=audit.double_counted,
            http_5xx="-",
            peak_memory="-",
            passed=passed,
        )
        assert audit.exactly_once, audit
        assert len(dlq) == len(poison)
        assert reasons
    finally:
        store.stop()
