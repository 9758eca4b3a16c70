"""The `sam build` output works on its own: each handler runs from its build directory plus the
layer only, in an isolated Lambda-version interpreter, against real S3, Redis and Kafka."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from fraud_core.online import keys
from fraud_devstack.built import (
    BUILD,
    RUNTIME_DEPS,
    dir_size,
    lambda_python,
    pyenv_versions,
    run_built_handler,
)
from fraud_devstack.lambda_context import CONTEXT_ATTRIBUTES
from fraud_devstack.services import Service
from fraud_devstack.topics import ensure_topics
from tests.conftest import MODEL_NAME
from tests.events import EVENTS, load_event

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
FUNCTIONS = ("ApiFunction", "StreamFunction", "MonitorFunction")


def _require_build() -> None:
    missing = [
        str(p)
        for p in (*(BUILD / f for f in FUNCTIONS), BUILD / "FraudCoreLayer", RUNTIME_DEPS)
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
def log_bucket(s3_endpoint: str) -> str:
    """A bucket of its own for the scoring and label logs, used from its root like the stack's."""
    name = f"logs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def runtime_env(
    s3_registry: str, log_bucket: str, redis_server: Service, kafka_broker: Service, moto_server: Service
) -> dict[str, str]:
    _require_build()
    return {
        "FRAUD_REGISTRY_URI": s3_registry,
        # As template.yaml sets it: Lambda's file system is read-only, the logs go to S3.
        "FRAUD_LOG_URI": f"s3://{log_bucket}",
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


def log_keys(bucket: str, prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


# The monitor has no model to time, so it does not go through run_built_handler (which also loads
# the function's model provider); same isolation: -I -S, the build directory, the layer, boto3.
_MONITOR_CHILD = r"""
import json, sys
from fraud_monitor.handler import lambda_handler

class Context:
    @staticmethod
    def get_remaining_time_in_millis():
        return 300000

context = Context()
for name, value in json.loads(sys.argv[1]).items():
    setattr(context, name, value)
with open(sys.argv[2]) as fh:
    response = lambda_handler(json.load(fh), context)
heavy = [m for m in ("sklearn", "pandas", "scipy", "joblib", "duckdb") if m in sys.modules]
print("@@RESULT@@" + json.dumps({"response": response, "heavy_modules": heavy}))
"""


def run_built_monitor(event: Path, env: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The built monitor's result, and the EMF documents it printed."""
    python = lambda_python()
    assert python is not None
    search_path = [
        str(BUILD / "MonitorFunction"),
        str(BUILD / "FraudCoreLayer" / "python"),
        str(RUNTIME_DEPS),
    ]
    boot = f"import sys; sys.path[:0] = {search_path!r}; exec(compile({_MONITOR_CHILD!r}, 'built-child', 'exec'))"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # python3.13 is a pyenv shim here: it needs the versions to choose from, as run_built_handler gives it.
    child_env["PYENV_VERSION"] = os.environ.get("PYENV_VERSION", "") or pyenv_versions()
    context = json.dumps({**CONTEXT_ATTRIBUTES, "function_name": "MonitorFunction"})
    done = subprocess.run(
        [python, "-I", "-S", "-c", boot, context, str(event)],
        env={**child_env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    marker = next(line for line in lines if line.startswith("@@RESULT@@"))
    emf = [doc for doc in (json.loads(line) for line in lines if line.startswith("{")) if "_aws" in doc]
    return json.loads(marker[len("@@RESULT@@") :]), emf


def with_fresh_transaction_ids(event: dict[str, Any]) -> dict[str, Any]:
    """The Kafka event with new transaction ids: the session's Redis remembers the sample's."""
    suffix = uuid.uuid4().hex[:8]
    out = copy.deepcopy(event)
    for records in out["records"].values():
        for record in records:
            value = json.loads(base64.b64decode(record["value"]))
            value["transaction_id"] = f"{value['transaction_id']}-{suffix}"
            record["value"] = base64.b64encode(json.dumps(value).encode()).decode()
    return out


def test_built_monitor_function_reports_on_what_the_stream_function_logged(
    runtime_env: dict[str, str], log_bucket: str, kafka_broker: Service, tmp_path: Path
) -> None:
    # GIVEN the built stream function has scored a batch, logging it to the log bucket's root
    ensure_topics(kafka_broker.url, ["fraud-scores", "fraud-alerts", "fraud-dlq"])
    batch = tmp_path / "kafka-msk-fresh.json"
    batch.write_text(json.dumps(with_fresh_transaction_ids(load_event("kafka-msk.json"))))
    scored = run_built_handler(
        "StreamFunction", "fraud_stream.handler.lambda_handler", [batch], env=runtime_env
    )
    assert scored["responses"] == [{"batchItemFailures": []}]
    logged = log_keys(log_bucket, "scoring-log/")
    assert logged and all(key.endswith(".jsonl.gz") for key in logged)
    # WHEN the built monitor function runs on its schedule's event
    env = {
        **runtime_env,
        "POWERTOOLS_METRICS_NAMESPACE": "FraudDetection",
        "POWERTOOLS_SERVICE_NAME": "fraud-detection",
    }
    result, emf = run_built_monitor(EVENTS / "eventbridge-monitor-schedule.json", env)
    # THEN it writes its report beside the logs, and emits its metrics with the dimensions the
    # template's alarms and dashboard name
    response = result["response"]
    assert response["report"].startswith("monitoring/dt=")
    assert log_keys(log_bucket, "monitoring/") == [response["report"]]
    assert response["model_version"]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ScoredTransactions", "AlertsPerDay", "LogProblems"} <= names
    monitor_docs = [doc for doc in emf if "ScoredTransactions" in doc]
    assert monitor_docs[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ModelName", "service"]]
    assert monitor_docs[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FraudDetection"
    assert result["heavy_modules"] == [], "the monitor runs on the layer's numpy only"


def test_built_artifacts_fit_lambda_size_limit() -> None:
    _require_build()
    layer = dir_size(BUILD / "FraudCoreLayer")
    for function in FUNCTIONS:
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
    monitor = sorted(p.name for p in (BUILD / "MonitorFunction" / "fraud_monitor").rglob("*.py"))
    assert monitor == ["__init__.py", "handler.py"]
    # AND the layer holds the core only: no test helper, no example account id
    layer = BUILD / "FraudCoreLayer" / "python" / "fraud_core"
    sources = {p.relative_to(layer).as_posix(): p.read_text() for p in layer.rglob("*.py")}
    assert not {name.rsplit("/", 1)[-1] for name in sources} & DEVELOPER_TOOLS
    assert not [
        name for name, text in sources.items() if "def build_event" in text or ":123456789012:" in text
    ]
    assert not (BUILD / "FraudCoreLayer" / "python" / "fraud_devstack").exists()
