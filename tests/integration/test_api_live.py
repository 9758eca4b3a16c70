"""The HTTP API served by uvicorn on loopback, with the model in a real S3 endpoint and a real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from fraud_core.online import keys
from fraud_devstack.services import Service, start_redis
from fraud_devstack.uvicorn_thread import serve_in_thread
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches
from tests.events import load_event
from tests.reliability.harness import fuzz_openapi

PREDICT = json.loads(load_event("apigw-v2-predict.json")["body"])
SCORE = json.loads(load_event("apigw-v2-score.json")["body"])


@pytest.fixture
def api(s3_registry: str, redis_server: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL of the app, configured only through FRAUD_* environment variables."""
    monkeypatch.setenv("FRAUD_REGISTRY_URI", s3_registry)
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("FRAUD_REDIS_URL", redis_server.url)
    monkeypatch.setenv("FRAUD_REDIS_TIMEOUT_SECONDS", "0.3")
    clear_caches()
    from fraud_api.main import create_app

    with serve_in_thread(create_app()) as url:
        yield url
    clear_caches()


def test_scores_reads_features_and_stored_results_over_http(api: str, redis_server: Service) -> None:
    r = redis.Redis.from_url(redis_server.url)
    # GIVEN what the stream function writes: a card's counters and a stored result
    r.hset(keys.CARD("c_42"), mapping={keys.CARD_COUNT_FIELD: 4, keys.CARD_AMOUNT_FIELD: 50.0})
    r.set(
        keys.RESULT("t_stream_1"),
        json.dumps({"transaction_id": "t_stream_1", "fraud_score": 0.97, "decision": "decline"}),
    )
    with httpx.Client(base_url=api, timeout=10) as client:
        predicted = client.post("/predict", json=PREDICT)
        assert predicted.status_code == 200
        assert 0 <= predicted.json()["fraud_score"] <= 1
        scored = client.post("/v1/score", json=SCORE).json()
        assert scored["card_counters"] == {"tx_count": 4.0, "amount_sum": 50.0}
        assert scored["degraded"] is False
        assert scored["warnings"] == []
        assert client.get("/v1/transactions/t_stream_1").json()["decision"] == "decline"
        assert client.get("/v1/transactions/t_unknown").status_code == 404
        ready = client.get("/ready").json()
        assert ready["ready"] is True
        assert ready["store"] == {"configured": True, "ready": True}
        assert ready["model"]["registry"].startswith("s3://")


def test_redis_outage_degrades_without_5xx_and_recovers(
    trained: TrainedModel, s3_registry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    own = start_redis(log_dir=tmp_path)  # a private server we are free to stop
    monkeypatch.setenv("FRAUD_REGISTRY_URI", s3_registry)
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("FRAUD_REDIS_URL", own.url)
    monkeypatch.setenv("FRAUD_REDIS_TIMEOUT_SECONDS", "0.3")
    clear_caches()
    from fraud_api.main import create_app

    try:
        with serve_in_thread(create_app()) as url, httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/v1/score", json=SCORE).json()["warnings"] == []
            own.stop()
            start = time.monotonic()
            during = client.post("/v1/score", json=SCORE)
            assert during.status_code == 200
            assert during.json()["degraded"] is False, "the Kaggle model's score needs nothing from Redis"
            assert during.json()["card_counters"] is None
            assert "card counters unavailable" in during.json()["warnings"][0]
            assert time.monotonic() - start < 3, "a Redis outage must fail fast, not hang"
            assert client.post("/predict", json=PREDICT).status_code == 200
            assert client.get("/ready").status_code == 503
            restarted = start_redis(own.port, log_dir=tmp_path)
            try:
                assert client.post("/v1/score", json=SCORE).json()["warnings"] == []
                assert client.get("/ready").status_code == 200
            finally:
                restarted.stop()
    finally:
        own.stop()
        clear_caches()


SCHEMATHESIS_EXAMPLES = 300  # per operation (mixed positive/negative); fewer for small input spaces


def test_schemathesis_finds_no_server_errors(api: str) -> None:
    statuses, server_errors = fuzz_openapi(api, max_examples=SCHEMATHESIS_EXAMPLES)
    total = sum(statuses.values())
    print(f"schemathesis: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= 1000, f"only {total} cases ran: {dict(statuses)}"
    assert not server_errors, "\n".join(server_errors[:10])
    assert statuses[422] > 100, dict(statuses)
    assert statuses[200] > 100, dict(statuses)
