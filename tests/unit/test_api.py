"""The FastAPI app with its dependencies replaced by fakes (no sockets, no registry I/O per request)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fraud_api import deps
from fraud_api.main import create_app
from fraud_api.observer import LoggingObserver
from fraud_core.errors import ModelUnavailableError, StoreUnavailableError
from fraud_core.online.results import InMemoryResultStore
from fraud_core.provider import ModelProvider
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.scorer import Scorer
from fraud_core.settings import Settings
from fraud_core.shapes.kaggle import PCA_FIELDS
from tests.conftest import MODEL_NAME, TrainedModel
from tests.events import load_event

PREDICT = json.loads(load_event("apigw-v2-predict.json")["body"])
SCORE = json.loads(load_event("apigw-v2-score.json")["body"])


class DownStore(InMemoryResultStore):
    """A store whose every call fails like an unreachable Redis."""

    def _down(self, *_: Any) -> Any:
        raise StoreUnavailableError("redis PING failed: Connection refused")

    get_result = ping = card_counters = _down  # type: ignore[assignment]


@pytest.fixture
def store() -> InMemoryResultStore:
    return InMemoryResultStore()


@pytest.fixture
def observer() -> LoggingObserver:
    return LoggingObserver()


@pytest.fixture
def settings() -> Settings:
    return Settings(api_max_batch=5)


@pytest.fixture
def app(
    trained: TrainedModel, store: InMemoryResultStore, observer: LoggingObserver, settings: Settings
) -> FastAPI:
    application = create_app(observer=observer, max_body_bytes=64 * 1024)
    provider = ModelProvider(trained.registry)
    application.dependency_overrides[deps.provider] = lambda: provider
    application.dependency_overrides[deps.result_store] = lambda: store
    application.dependency_overrides[deps.settings] = lambda: settings
    return application


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=True)


def test_classic_predict_contract(client: TestClient, scorer: Scorer) -> None:
    response = client.post("/predict", json=PREDICT)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"fraud_score", "decision", "model_version"}
    assert 0.0 <= body["fraud_score"] <= 1.0
    assert body["fraud_score"] == scorer.score_one(PREDICT).fraud_score


def test_score_returns_decision_reasons_and_card_counters(
    client: TestClient, store: InMemoryResultStore, observer: LoggingObserver, scorer: Scorer
) -> None:
    # GIVEN the stream function counted two transactions of the card (the fields it writes)
    store.cards["c_42"] = {"tx_count": 2.0, "amount_sum": 149.62}
    body = client.post("/v1/score", json=SCORE).json()
    assert body["transaction_id"] == "t_0"
    assert body["decision"] in {"approve", "review", "decline"}
    assert body["card_counters"] == {"tx_count": 2.0, "amount_sum": 149.62}
    assert body["online_features"] is None, "a Kaggle-shape model has no online features"
    assert body["degraded"] is False
    assert body["warnings"] == []
    # THEN the reasons are the core's occlusion reasons for this very transaction
    expected = scorer.score_one({**SCORE}, explain="all")
    assert body["fraud_score"] == expected.fraud_score
    assert body["reasons"] == [r.to_dict() for r in expected.reasons]
    assert all(r["feature"] in scorer.feature_names and r["contribution"] > 0 for r in body["reasons"])
    assert observer.counts[f"decision_{body['decision']}"] == 1


def test_score_generates_transaction_id_and_accepts_iso_timestamp(client: TestClient) -> None:
    tx = {k: v for k, v in SCORE.items() if k not in ("transaction_id", "Time", "card_id")}
    body = client.post("/v1/score", json={**tx, "timestamp": "2026-11-29T03:15:00Z"}).json()
    assert body["transaction_id"].startswith("tx_")
    assert body["card_counters"] is None
    # THEN the ISO time is the same instant as epoch seconds (03:15 UTC → hour_of_day 3.25)
    same = client.post(
        "/v1/score", json={**tx, "Time": datetime(2026, 11, 29, 3, 15, tzinfo=UTC).timestamp()}
    ).json()
    assert same["fraud_score"] == body["fraud_score"]


def test_redis_down_still_scores_without_card_counters(
    client: TestClient, app: FastAPI, observer: LoggingObserver
) -> None:
    app.dependency_overrides[deps.result_store] = DownStore
    response = client.post("/v1/score", json=SCORE)
    assert response.status_code == 200
    body = response.json()
    # THEN the score is whole (the Kaggle model takes nothing from Redis), the counters are missing
    assert body["degraded"] is False
    assert body["card_counters"] is None
    assert body["warnings"] and "card counters unavailable" in body["warnings"][0]
    assert observer.counts["degraded"] == 1
    assert client.get("/ready").status_code == 503
    assert client.get("/v1/transactions/t_0").status_code == 503


def test_batch_scores_in_order_and_enforces_limit(client: TestClient) -> None:
    txs = [{**SCORE, "transaction_id": f"t_{i}", "Amount": float(i)} for i in range(5)]
    body = client.post("/v1/score/batch", json={"transactions": txs}).json()
    assert [r["transaction_id"] for r in body["results"]] == [f"t_{i}" for i in range(5)]
    too_many = client.post("/v1/score/batch", json={"transactions": [*txs, SCORE]})
    assert too_many.status_code == 422
    assert "at most 5 transactions" in too_many.text
    assert client.post("/v1/score/batch", json={"transactions": []}).status_code == 422


def test_stored_transaction_lookup(client: TestClient, store: InMemoryResultStore) -> None:
    store.put_results([{"transaction_id": "t_9", "fraud_score": 0.9, "decision": "decline"}])
    assert client.get("/v1/transactions/t_9").json()["decision"] == "decline"
    missing = client.get("/v1/transactions/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]


def test_model_summary_and_health(client: TestClient, scorer: Scorer) -> None:
    summary = client.get("/v1/model").json()
    assert summary["version"] == scorer.version
    assert summary["features"] == scorer.manifest.features
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True
    assert ready["model"]["version"] == scorer.version


def test_no_model_is_503_with_reason(client: TestClient, app: FastAPI, tmp_path: Any) -> None:
    empty = ModelProvider(ModelRegistry(LocalModelStore(tmp_path), MODEL_NAME))
    app.dependency_overrides[deps.provider] = lambda: empty
    response = client.post("/predict", json=PREDICT)
    assert response.status_code == 503
    assert "no model named" in response.json()["detail"]
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["model"]["ready"] is False


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("missing field", {k: v for k, v in PREDICT.items() if k != "V3"}, "V3"),
    ("extra field", {**PREDICT, "user_id": "x"}, "extra_forbidden"),
    ("string number", {**PREDICT, "V1": "1.5"}, "V1"),
    ("boolean", {**PREDICT, "V2": True}, "V2"),
    ("null", {**PREDICT, "V2": None}, "V2"),
    ("absurd", {**PREDICT, "V4": 1e300}, "V4"),
    ("array body", [PREDICT], "dictionary"),
    ("scalar body", 3, "dictionary"),
]


@pytest.mark.parametrize(("case", "body", "mentions"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_predict_bodies_are_422_with_field_messages(
    client: TestClient, case: str, body: Any, mentions: str
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422, case
    assert mentions in response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422_not_500(client: TestClient, literal: str) -> None:
    raw = json.dumps(PREDICT).replace(str(PREDICT["V5"]), literal)
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "V5" in response.text


def test_one_bad_field_is_one_error_about_that_field(client: TestClient) -> None:
    # GIVEN a transaction of the current (Kaggle) shape with one field of the wrong type
    response = client.post("/v1/score", json={**SCORE, "V3": "oops"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    # THEN the answer names that field only: not the other shapes' fields, no union noise
    assert [(d["loc"], d["type"]) for d in detail] == [(["body", "V3"], "float_type")]
    assert len(response.content) < 600
    # AND in a batch the position is named
    batch = client.post("/v1/score/batch", json={"transactions": [SCORE, {**SCORE, "Amount": -1}]})
    assert [d["loc"] for d in batch.json()["detail"]] == [["body", "transactions", 1, "Amount"]]


def test_openapi_limits_equal_the_enforced_limits(client: TestClient, settings: Settings) -> None:
    spec = client.get("/openapi.json").json()
    batch = spec["paths"]["/v1/score/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # The app was created with the default settings (1,000); the enforced limit comes from the same field
    assert batch["properties"]["transactions"]["maxItems"] == Settings().api_max_batch
    one = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {r["$ref"].rsplit("/", 1)[-1] for r in one["oneOf"]} == {"ScoreRequest", "EntityScoreRequest"}
    assert spec["components"]["schemas"]["ScoreRequest"]["properties"]["V1"]["maximum"] == 10_000


def test_negative_amount_and_both_times_refused(client: TestClient) -> None:
    assert client.post("/v1/score", json={**SCORE, "Amount": -5}).status_code == 422
    both = client.post("/v1/score", json={**SCORE, "timestamp": "2026-01-01T00:00:00Z"})
    assert both.status_code == 422
    assert "exactly one of" in both.text


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 422),
        (b"[" * 50_000 + b"]" * 50_000, {"content-type": "application/json"}, 413),
        (b"[" * 20_000, {"content-type": "application/json"}, 400),
        ('{"V1": "\u00e9\u6f22\U0001f600"}'.encode(), {"content-type": "application/json"}, 422),
        (b"\xff\xfe\x00", {"content-type": "application/json"}, 400),
        (b"V1=1", {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b"x" * 70_000, {"content-type": "application/json"}, 413),
    ],
    ids=["malformed", "oversized-deep", "deep-nesting", "unicode", "bad-encoding", "form", "oversized"],
)
def test_hostile_bodies_never_500(
    client: TestClient, content: bytes, headers: dict[str, str], status: int
) -> None:
    assert client.post("/predict", content=content, headers=headers).status_code == status


def test_body_without_content_type_is_read_as_json(client: TestClient) -> None:
    response = client.post("/predict", content=json.dumps(PREDICT).encode(), headers={"content-type": ""})
    assert response.status_code == 200


def test_api_key_enforced_when_configured(client: TestClient, app: FastAPI) -> None:
    app.dependency_overrides[deps.settings] = lambda: Settings(api_key="s3cret")
    assert client.post("/predict", json=PREDICT).status_code == 401
    assert client.post("/predict", json=PREDICT, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.post("/predict", json=PREDICT, headers={"x-api-key": "s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/v1/model").status_code == 401


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/predict",
        "/v1/score",
        "/v1/score/batch",
        "/v1/transactions/{transaction_id}",
        "/v1/model",
        "/health",
        "/ready",
    } <= set(spec["paths"])
    assert spec["components"]["schemas"]["PredictRequest"]["examples"]
    assert client.get("/docs").status_code == 200


def test_model_unavailable_raised_inside_route_is_503(client: TestClient, app: FastAPI) -> None:
    def broken() -> Scorer:
        raise ModelUnavailableError("registry unreachable")

    app.dependency_overrides[deps.scorer] = broken
    assert client.post("/predict", json=PREDICT).status_code == 503


def test_labels_are_accepted_for_scored_transactions_only(
    client: TestClient, app: FastAPI, store: InMemoryResultStore
) -> None:
    from fraud_core.online.labels import InMemoryLabelLedger

    ledger = InMemoryLabelLedger()
    app.dependency_overrides[deps.label_ledger] = lambda: ledger
    store.put_results([{"transaction_id": "812", "fraud_score": 0.4, "decision": "review", "card_id": "c"}])
    # WHEN a label names a transaction this system scored THEN it is accepted and recorded with its sender
    response = client.post("/v1/labels", json={"labels": [{"transaction_id": "812", "is_fraud": True}]})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "applied_online": 0, "author": "anonymous:testclient"}
    assert [(e["transaction_id"], e["is_fraud"], e["author"]) for e in ledger.entries] == [
        ("812", "1", "anonymous:testclient")
    ]
    # WHEN a label names a transaction never scored THEN nothing of the request is accepted
    forged = client.post(
        "/v1/labels",
        json={
            "labels": [
                {"transaction_id": "812", "is_fraud": False},
                {"transaction_id": "x1", "is_fraud": True},
            ]
        },
    )
    assert forged.status_code == 422
    assert forged.json()["detail"][0]["loc"] == ["body", "labels", 1, "transaction_id"]
    assert "not a transaction this system scored" in forged.text
    assert len(ledger.entries) == 1
    assert (
        client.post("/v1/labels", json={"labels": [{"transaction_id": "812", "is_fraud": "yes"}]}).status_code
        == 422
    )
    assert client.post("/v1/labels", json={"labels": []}).status_code == 422


def test_labels_take_their_own_key_and_are_rate_limited(
    client: TestClient, app: FastAPI, store: InMemoryResultStore
) -> None:
    from fraud_api.limits import RateLimiter

    store.put_results([{"transaction_id": "812", "fraud_score": 0.4, "decision": "review"}])
    body = {"labels": [{"transaction_id": "812", "is_fraud": True}]}
    # GIVEN API-key auth on, without a labels key: the scoring key does not open labels
    app.dependency_overrides[deps.settings] = lambda: Settings(api_key="score-key")
    assert client.post("/v1/labels", json=body, headers={"x-api-key": "score-key"}).status_code == 403
    # GIVEN a labels key: only it opens the route, and the ledger names its fingerprint
    app.dependency_overrides[deps.settings] = lambda: Settings(
        api_key="score-key", labels_api_key="label-key"
    )
    assert client.post("/v1/labels", json=body, headers={"x-api-key": "score-key"}).status_code == 401
    ok = client.post("/v1/labels", json=body, headers={"x-api-key": "label-key"})
    assert ok.status_code == 202 and ok.json()["author"].startswith("key:")
    assert client.post("/predict", json=PREDICT, headers={"x-api-key": "label-key"}).status_code == 401
    # AND one client cannot post more than its per-minute budget
    app.dependency_overrides[deps.label_limiter] = lambda: RateLimiter(per_minute=2)
    limited = app.dependency_overrides[deps.label_limiter]()
    app.dependency_overrides[deps.label_limiter] = lambda: limited
    codes = [
        client.post("/v1/labels", json=body, headers={"x-api-key": "label-key"}).status_code for _ in range(3)
    ]
    assert codes == [202, 202, 429]


def test_card_transaction_body_with_kaggle_model_is_422(client: TestClient) -> None:
    body = {"tx_datetime": 1522541234, "customer_id": "1", "terminal_id": "2", "amount": 5.0}
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body"],
            "msg": "this is a simulated transaction, but the current model (kaggle schema) scores: "
            + ", ".join(["transaction_id", "card_id", "Time", "timestamp", "Amount", *PCA_FIELDS]),
            "type": "schema_mismatch",
        }
    ]


def test_docs_load_nothing_from_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 1_000_000
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_every_response_carries_security_headers(client: TestClient) -> None:
    for response in (
        client.post("/predict", json=PREDICT),
        client.get("/health"),
        client.post("/predict", json={}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]


def test_anonymous_ready_reveals_only_ready_or_not(client: TestClient, app: FastAPI) -> None:
    app.dependency_overrides[deps.settings] = lambda: Settings(api_key="k")
    anonymous = client.get("/ready")
    assert anonymous.json() == {"ready": True}
    detailed = client.get("/ready", headers={"x-api-key": "k"}).json()
    assert detailed["ready"] is True and "registry" in detailed["model"]
