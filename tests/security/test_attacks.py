"""Each attack found against the running system, replayed against real Redis (and tansu, moto):
before the hostile-input work each of these broke state, steered a decision, lost a record,
answered 500 or read outside the registry; now each is refused or isolated."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fraud_api import deps
from fraud_api.main import create_app
from fraud_core.errors import ArtifactIntegrityError
from fraud_core.online import keys
from fraud_core.online.client import redis_client
from fraud_core.online.labels import RedisLabelLedger
from fraud_core.online.results import RedisResultStore
from fraud_core.provider import ModelProvider, load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.scorer import Scorer
from fraud_core.shapes.simulated import SIMULATED
from fraud_core.shapes.simulated.online import CARD_WINDOW
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import KafkaSink
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.services import Service
from fraud_devstack.topics import ensure_topics
from fraud_devstack.uvicorn_thread import serve_in_thread
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches
from tests.reliability.harness import read_topic
from tests.security.conftest import Stream

DAY = 86_400
T0 = 1_522_540_800  # 2018-04-01, the simulator's first day


def card_tx(
    tid: str, *, card: str = "c1", terminal: str = "t1", at: int = T0, amount: float = 20.0
) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "tx_datetime": at,
        "customer_id": card,
        "terminal_id": terminal,
        "amount": amount,
    }


def api_for(scorer: Scorer, registry: ModelRegistry, stream: Stream) -> TestClient:
    """The HTTP function on the stream's real Redis (its windows, results and label ledger)."""
    app: FastAPI = create_app()
    provider = ModelProvider(registry)
    app.dependency_overrides[deps.provider] = lambda: provider
    app.dependency_overrides[deps.online_state] = lambda: scorer.shape.online_state(stream.client)
    app.dependency_overrides[deps.result_store] = lambda: RedisResultStore(stream.client)
    app.dependency_overrides[deps.label_ledger] = lambda: RedisLabelLedger(stream.client)
    return TestClient(app)


def test_a_hostile_record_cannot_break_its_card(
    simulated_scorer: Scorer, simulated_registry: ModelRegistry, own_redis: Service
) -> None:
    stream = Stream(simulated_scorer, own_redis.url)
    # WHEN a batch holds an id with '|' (once parsed inside Lua), two amounts near 1.7e308
    # (their sum was an infinite cjson value) and a good transaction of the same card
    first = stream.send(
        card_tx("a|b"), card_tx("big1", amount=1.7e308), card_tx("big2", amount=1.7e308), card_tx("ok1")
    )
    # THEN the hostile records are dead-lettered with their reason and the batch does not fail
    assert first.failures == [] and (first.scored, first.dead_lettered) == (1, 3)
    reasons = " | ".join(d["reason"] for d in stream.dlq())
    assert (
        "transaction_id: may only contain" in reasons
        and "amount: must be between 0 and 10,000,000" in reasons
    )
    # AND the card keeps scoring, in the stream and over HTTP
    later = stream.send(card_tx("ok2", at=T0 + 60))
    assert later.scored == 1 and stream.scores()["ok2"]["features"]["card_nb_tx_1d"] == 2
    response = api_for(simulated_scorer, simulated_registry, stream).post(
        "/v1/score", json=card_tx("probe", at=T0 + 120)
    )
    assert response.status_code == 200, response.text
    assert response.json()["online_features"]["card_nb_tx_1d"] == 3


def test_a_record_the_store_refuses_is_isolated_from_its_neighbours(
    simulated_scorer: Scorer, own_redis: Service
) -> None:
    # GIVEN a card whose window key holds a value of the wrong type (corrupted state)
    stream = Stream(simulated_scorer, own_redis.url)
    stream.client.set(CARD_WINDOW("bad-card"), "not a sorted set")
    report = stream.send(card_tx("n1", card="c2"), card_tx("x1", card="bad-card"), card_tx("n2", card="c3"))
    # THEN only that card's record is dead-lettered; its neighbours are scored, nothing is retried
    assert report.failures == [] and report.scored == 2
    (dead,) = stream.dlq()
    assert dead["offset"] == 1 and "store rejected" in dead["reason"] and "WRONGTYPE" in dead["reason"]


def test_forged_labels_do_not_steer_a_decision(
    simulated_scorer: Scorer, simulated_registry: ModelRegistry, own_redis: Service
) -> None:
    stream = Stream(simulated_scorer, own_redis.url)
    # GIVEN 20 clean transactions at terminal T, scored by the stream
    assert (
        stream.send(
            *[card_tx(f"tx{i}", card=f"k{i}", terminal="T", at=T0 + i * 600) for i in range(20)]
        ).scored
        == 20
    )
    api = api_for(simulated_scorer, simulated_registry, stream)
    probe = card_tx("probe", card="kp", terminal="T", at=T0 + 8 * DAY)
    before = api.post("/v1/score", json=probe).json()
    # WHEN 1,000 fraud labels name transactions this system never scored, over HTTP and on the stream
    forged = [{"transaction_id": f"forged{i}", "terminal_id": "T", "is_fraud": True} for i in range(1000)]
    assert api.post("/v1/labels", json={"labels": forged}).status_code == 422
    on_stream = stream.send(*[{"type": "label", **f} for f in forged])
    assert on_stream.labels == 0 and on_stream.dead_lettered == 1000
    # THEN the terminal's risk and the decision are exactly what they were
    after = api.post("/v1/score", json=probe).json()
    assert after["online_features"] == before["online_features"]
    assert (after["fraud_score"], after["decision"]) == (before["fraud_score"], before["decision"])
    # AND labelling every real transaction there as fraud reads as a rate of at most 1
    real = [{"transaction_id": f"tx{i}", "is_fraud": True} for i in range(20)]
    assert api.post("/v1/labels", json={"labels": real}).status_code == 202
    risk = api.post("/v1/score", json=probe).json()["online_features"]["terminal_risk_7d"]
    assert 0 < risk <= 1
    ledger = stream.client.xrange(keys.PREFIX + ":labels")
    assert len(ledger) == 20 and all(entry[b"author"].startswith(b"anonymous:") for _, entry in ledger)


@pytest.fixture
def kaggle_stream(
    trained: TrainedModel, own_redis: Service, kafka_broker: Service
) -> Iterator[tuple[StreamProcessor, str]]:
    dlq = f"dlq-{own_redis.port}"
    ensure_topics(kafka_broker.url, [dlq, f"scores-{own_redis.port}", f"alerts-{own_redis.port}"])
    from fraud_core.stream.ports import Topics

    sink = KafkaSink(kafka_broker.url)
    topics = Topics(scores=f"scores-{own_redis.port}", alerts=f"alerts-{own_redis.port}", dlq=dlq)
    state = RedisStreamState(redis_client(own_redis.url, timeout_seconds=5))
    processor = StreamProcessor(trained.scorer(), state, sink, topics=topics)
    yield processor, dlq
    sink.close()


def test_a_reused_id_with_another_payload_lands_in_the_dlq(
    trained: TrainedModel, kaggle_stream: tuple[StreamProcessor, str], kafka_broker: Service
) -> None:
    processor, dlq = kaggle_stream
    original = trained_record(trained)
    rogue = {**original, "Amount": original["Amount"] + 999.0}

    def event(*payloads: dict[str, Any], start: int) -> dict[str, Any]:
        return build_event(
            [
                {
                    "topic": "transactions",
                    "partition": 0,
                    "offset": start + i,
                    "value": json.dumps(p).encode(),
                }
                for i, p in enumerate(payloads)
            ]
        )

    first = processor.process(event(original, rogue, start=0))
    later = processor.process(event(rogue, start=2))
    # THEN both rogue copies are in the DLQ topic as id_conflict, never silently dropped
    assert (first.scored, first.conflicts, later.conflicts) == (1, 1, 1)
    dead = read_topic(kafka_broker.url, dlq, idle_seconds=2, limit_seconds=20)
    assert sorted(d["offset"] for d in dead) == [1, 2]  # keyless: spread over partitions
    assert all(d["reason"].startswith("id_conflict") for d in dead)


def trained_record(trained: TrainedModel) -> dict[str, Any]:
    frame = trained.frame.head(1)
    record = {c: float(frame.iloc[0][c]) for c in frame.columns if c != "Class"}
    return {**record, "transaction_id": "t_sec_1", "card_id": "c_sec"}


def test_redis_at_maxmemory_never_answers_500_or_loses_a_batch(
    trained: TrainedModel, own_redis: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = Stream(trained.scorer(), own_redis.url)
    client = stream.client
    # GIVEN Redis full: maxmemory reached with the noeviction policy
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "2mb")

    def fill() -> None:
        for i in range(10_000):
            client.set(f"filler:{i}", "x" * 10_000)

    with pytest.raises(Exception, match="maxmemory"):
        fill()
    record = trained_record(trained)
    # THEN the stream reports the whole batch for redelivery (no raise, nothing half-done)
    full = stream.send(record)
    assert len(full.failures) == 1 and full.scored == 0 and "OutOfMemoryError" in (full.error or "")
    # AND the API keeps scoring the Kaggle model, and /ready says the store refuses writes
    monkeypatch.setenv("FRAUD_REGISTRY_URI", str(trained.registry_dir))
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("FRAUD_REDIS_URL", own_redis.url)
    clear_caches()
    try:
        with serve_in_thread(create_app()) as url, httpx.Client(base_url=url, timeout=10) as http:
            scored = http.post("/v1/score", json={k: v for k, v in record.items()})
            assert scored.status_code == 200, scored.text
            ready = http.get("/ready")
            assert ready.status_code == 503 and "OutOfMemoryError" in ready.json()["store"]["error"]
    finally:
        clear_caches()
    # WHEN memory is freed THEN the redelivered record is scored exactly once
    client.config_set("maxmemory", "0")
    assert stream.send(record).scored == 1
    assert stream.send(record).duplicates == 1
    assert RedisStreamState(client).dedupe_states(["t_sec_1"]) == [keys.Dedupe.DONE]


def test_registry_names_cannot_walk_out_of_the_registry(trained: TrainedModel, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(trained.registry_dir, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    registry = ModelRegistry(LocalModelStore(root), MODEL_NAME)
    pointer = json.loads((root / MODEL_NAME / "current.json").read_text())
    # WHEN current.json names a version outside the registry
    shutil.copytree(root / MODEL_NAME / pointer["version"], outside / "x")
    (root / MODEL_NAME / "current.json").write_text(json.dumps({**pointer, "version": "../../outside/x"}))
    with pytest.raises(ArtifactIntegrityError, match="refusing registry name"):
        load_scorer(registry)
    with pytest.raises(ArtifactIntegrityError, match="refusing registry name"):
        registry.promote("../x")
    # WHEN a version directory is a symlink to a directory outside the root
    (root / MODEL_NAME / "current.json").write_text(json.dumps(pointer))
    (root / MODEL_NAME / "linked").symlink_to(outside / "x")
    with pytest.raises(ArtifactIntegrityError, match="resolves outside the registry"):
        registry.manifest("linked")
    assert load_scorer(registry).version == pointer["version"], "the real pointer still loads"


def test_anonymous_ready_reveals_nothing(
    trained: TrainedModel, own_redis: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_REGISTRY_URI", str(trained.registry_dir))
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("FRAUD_REDIS_URL", own_redis.url)
    monkeypatch.setenv("FRAUD_API_KEY", "k-sec")
    clear_caches()
    try:
        with serve_in_thread(create_app()) as url, httpx.Client(base_url=url, timeout=10) as http:
            anonymous = http.get("/ready")
            assert anonymous.status_code == 200 and anonymous.json() == {"ready": True}
            assert "registry" in http.get("/ready", headers={"x-api-key": "k-sec"}).json()["model"]
            assert (
                http.post(
                    "/v1/labels", json={"labels": [{"transaction_id": "t", "is_fraud": True}]}
                ).status_code
                == 403
            )
    finally:
        clear_caches()


def test_simulated_shape_labels_use_what_was_scored(
    simulated_scorer: Scorer, simulated_registry: ModelRegistry, own_redis: Service
) -> None:
    assert SIMULATED.name == simulated_scorer.shape.name
    stream = Stream(simulated_scorer, own_redis.url)
    stream.send(card_tx("real", terminal="T9", at=T0))
    api = api_for(simulated_scorer, simulated_registry, stream)
    lying = api.post(
        "/v1/labels", json={"labels": [{"transaction_id": "real", "terminal_id": "OTHER", "is_fraud": True}]}
    )
    assert lying.status_code == 422 and "is not the scored transaction's terminal" in lying.text
    assert stream.client.zcard("fraud:tf:OTHER") == 0
