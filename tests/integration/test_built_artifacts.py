"""The `sam build` output works on its own: each handler runs from its build directory plus the
layer only, in an isolated Lambda-version interpreter, against real S3, Redis and Kafka."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from fraud_core.online import keys
from fraud_devstack.built import BUILD, RUNTIME_DEPS, dir_size, lambda_python, run_built_handler
from fraud_devstack.services import Service
from fraud_devstack.topics import ensure_topics
from tests.conftest import MODEL_NAME
from tests.events import EVENTS

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def _require_build() -> None:
    missing = [
        str(p)
        for p in (BUILD / "ApiFunction", BUILD / "StreamFunction", BUILD / "FraudCoreLayer", RUNTIME_DEPS)
        if not p.exists()
    ]
    reason = None
    if missing:
        reason = f"no sam build output ({', '.join(missing)}): run `make build`"
    elif lambda_python() is None:
        reason = "python3.13 (the Lambda runtime's version) is not available"
    if reason:
        if os.environ.get("FRAUD_REQUIRE_BUILT") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def runtime_env(
    s3_registry: str, redis_server: Service, kafka_broker: Service, moto_server: Service
) -> dict[str, str]:
    _require_build()
    return {
        "FRAUD_REGISTRY_URI": s3_registry,
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_REDIS_URL": redis_server.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "AWS_ENDPOINT_URL": moto_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def test_built_api_function_serves_the_sample_events(runtime_env: dict[str, str]) -> None:
    events = [
        EVENTS / n
        for n in (
            "apigw-v2-predict.json",
            "apigw-v1-predict.json",
            "apigw-v2-predict-base64-no-content-type.json",
            "apigw-v2-score.json",
            "apigw-v2-ready.json",
        )
    ]
    result = run_built_handler("ApiFunction", "fraud_api.handler.lambda_handler", events, env=runtime_env)
    statuses = [r["statusCode"] for r in result["responses"]]
    assert statuses == [200, 200, 200, 200, 200], result["responses"]
    ready = json.loads(result["responses"][-1]["body"])
    assert ready["store"] == {"configured": True, "ready": True}
    assert ready["model"]["registry"].startswith("s3://")
    assert result["heavy_modules"] == [], "serving must not import sklearn/pandas/scipy/joblib"
    assert result["python"].startswith("3.13")


def test_built_stream_function_scores_both_event_shapes(
    runtime_env: dict[str, str], redis_server: Service, kafka_broker: Service
) -> None:
    ensure_topics(kafka_broker.url, ["fraud-scores", "fraud-alerts", "fraud-dlq"])
    events = [EVENTS / "kafka-msk.json", EVENTS / "kafka-self-managed.json"]
    result = run_built_handler(
        "StreamFunction", "fraud_stream.handler.lambda_handler", events, env=runtime_env
    )
    assert result["responses"] == [{"batchItemFailures": []}, {"batchItemFailures": []}]
    r = redis.Redis.from_url(redis_server.url)
    assert all(r.get(keys.RESULT(t)) for t in ("t_1", "t_3", "t_9"))
    assert result["heavy_modules"] == []


def test_built_artifacts_fit_lambda_size_limit() -> None:
    _require_build()
    layer = dir_size(BUILD / "FraudCoreLayer")
    for function in ("ApiFunction", "StreamFunction"):
        assert dir_size(BUILD / function) + layer < LAMBDA_UNZIPPED_LIMIT, function
    assert not (BUILD / "FraudCoreLayer" / "python" / "sklearn").exists()
    assert not (BUILD / "FraudCoreLayer" / "python" / "pandas").exists()


def test_runtime_boto3_dir_only_holds_what_lambda_provides() -> None:
    _require_build()
    names = {p.name.split("-")[0] for p in Path(RUNTIME_DEPS).iterdir() if not p.name.startswith((".", "_"))}
    assert {"boto3", "botocore"} <= names
    assert not names & {"numpy", "onnxruntime", "fastapi", "pydantic", "redis"}


DEVELOPER_TOOLS = {
    "producer.py",
    "local_runner.py",
    "replay.py",
    "topics.py",
    "kafka_events.py",
    "lambda_context.py",
}


def test_function_artifacts_hold_only_lambda_code() -> None:
    _require_build()
    # THEN each function ships its handler and wiring (and the API its routes), no developer CLI
    stream = sorted(p.name for p in (BUILD / "StreamFunction" / "fraud_stream").rglob("*.py"))
    assert stream == ["__init__.py", "handler.py", "wiring.py"]
    api = {p.name for p in (BUILD / "ApiFunction" / "fraud_api").rglob("*.py")}
    assert "handler.py" in api and not api & DEVELOPER_TOOLS
    # AND the layer holds the core only: no test helper, no example account id
    layer = BUILD / "FraudCoreLayer" / "python" / "fraud_core"
    sources = {p.relative_to(layer).as_posix(): p.read_text() for p in layer.rglob("*.py")}
    assert not {name.rsplit("/", 1)[-1] for name in sources} & DEVELOPER_TOOLS
    assert not [
        name for name, text in sources.items() if "def build_event" in text or ":123456789012:" in text
    ]
    assert not (BUILD / "FraudCoreLayer" / "python" / "fraud_devstack").exists()
