"""`sam local` for real: the built template served by `sam local start-api` and the stream function
run by `sam local invoke`, in Lambda containers, against this session's Redis, broker and S3.

A Docker daemon: the user's when one answers, else the private host-network-only daemon of
`fraud_devstack.docker_local` with the stand-in base image (built once, cached under .sam-local).
Skipped only where no daemon can be started at all.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis

from fraud_core.online import keys
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_devstack import docker_local, sam_dev
from fraud_devstack.docker_local import Daemon, DockerUnavailableError
from fraud_devstack.services import Service, free_port, start_process, stop_process
from fraud_devstack.topics import ensure_topics
from tests.conftest import MODEL_NAME, TrainedModel
from tests.events import lambda_context, load_event, with_json_body
from tests.integration.test_built_artifacts import _require_build

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def sam_docker() -> Iterator[Daemon]:
    """A reachable daemon with the Lambda python3.13 base image; stopped at the end if started here."""
    _require_build()
    if not sam_dev.SAM_PYTHON.exists():
        pytest.skip("the SAM CLI is not installed (`make sam-venv`)")
    started_here = False
    try:
        daemon = docker_local.find_daemon()
        if daemon is None:
            daemon, started_here = docker_local.start_private(), True
        if daemon.private:
            docker_local.ensure_image(daemon, quiet=True)
    except DockerUnavailableError as exc:
        pytest.skip(f"no Docker daemon can be started here: {exc}")
    yield daemon
    if started_here:
        docker_local.stop_private()


@pytest.fixture(scope="session")
def sam_env(
    trained: TrainedModel,
    moto_server: Service,
    redis_server: Service,
    kafka_broker: Service,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The session's model in a fresh S3 registry, the stream's topics, and the functions' env file."""
    suffix = uuid.uuid4().hex[:10]
    models, logs = f"sam-models-{suffix}", f"sam-logs-{suffix}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", moto_server.url)
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        s3 = boto3.client("s3")
        for bucket in (models, logs):
            s3.create_bucket(Bucket=bucket)
        source = trained.registry
        manifest = source.current_manifest()[1]
        ModelRegistry(store_from_uri(f"s3://{models}/models"), MODEL_NAME).publish(
            manifest, {name: source.read_verified(manifest, name) for name in manifest.files}
        )
    ensure_topics(kafka_broker.url, ["fraud-scores", "fraud-alerts", "fraud-dlq"])
    env = {
        "FRAUD_REDIS_URL": redis_server.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "FRAUD_REGISTRY_URI": f"s3://{models}/models",
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_LOG_URI": f"s3://{logs}",
        "AWS_ENDPOINT_URL": moto_server.url,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **CREDENTIALS,
    }
    path = tmp_path_factory.mktemp("sam") / "env.json"
    path.write_text(json.dumps({"Parameters": env}))
    return path


def _sam(command: list[str], daemon: Daemon, env_file: Path) -> list[str]:
    record = env_file.parent / "containers"
    return sam_dev.sam_args(command, daemon=daemon, env_file=env_file, record=record, host_network=True)


def _remove_recorded_containers(daemon: Daemon, env_file: Path) -> None:
    record = env_file.parent / "containers"
    if record.exists() and record.read_text().split():
        subprocess.run(["docker", "rm", "-f", *record.read_text().split()], env=daemon.env,
                       capture_output=True, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def sam_api(sam_docker: Daemon, sam_env: Path) -> Iterator[str]:
    """`sam local start-api --warm-containers EAGER` on a free loopback port; its base URL."""
    port = free_port()
    command = ["local", "start-api", "--host", "127.0.0.1", "--port", str(port), "--warm-containers", "EAGER"]
    log = sam_env.parent / "sam-api.log"
    with log.open("wb") as out:
        proc = start_process(
            _sam(command, sam_docker, sam_env),
            env={**sam_docker.env, **CREDENTIALS},
            stdout=out,
            cwd=sam_dev.ROOT,
        )
    try:
        sam_dev.wait_healthy(port, proc, timeout=300, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, timeout=15)
        _remove_recorded_containers(sam_docker, sam_env)


def fraud_like_body(trained: TrainedModel) -> dict[str, float]:
    """A /predict body from a fraud row of the training data: a score well above zero."""
    row = trained.frame[trained.frame["Class"] == 1].iloc[0]
    body = {f"V{i}": float(row[f"V{i}"]) for i in range(1, 29)}
    return {**body, "scaled_amount": 0.5, "scaled_time": 0.1}


def test_sam_local_api_scores_like_the_in_process_handler(sam_api: str, service_env: TrainedModel) -> None:
    from fraud_api.handler import lambda_handler

    seed = load_event("apigw-v2-predict.json")
    bodies = [seed["body"], json.dumps(fraud_like_body(service_env))]
    for body in bodies:
        # GIVEN the body scored in-process by the API handler with the same model
        expected = json.loads(lambda_handler(with_json_body(seed, body), lambda_context())["body"])
        # WHEN it is posted to sam local start-api
        started = time.perf_counter()
        response = httpx.post(
            f"{sam_api}/predict", content=body, headers={"content-type": "application/json"}, timeout=60
        )
        elapsed = time.perf_counter() - started
        # THEN the function in its container answers the same score, decision and model version
        assert response.status_code == 200, response.text
        assert response.json() == expected
        print(f"sam local /predict: {elapsed * 1000:.0f} ms")
    assert expected["fraud_score"] > 0.01, "the second body must not score 0: equality would prove little"


def test_sam_local_api_refuses_a_bad_payload_with_422(sam_api: str) -> None:
    body = dict(json.loads(load_event("apigw-v2-predict.json")["body"]), V1="1.5")
    response = httpx.post(f"{sam_api}/predict", json=body, timeout=60)
    assert response.status_code == 422
    assert any(err["loc"] == ["body", "V1"] for err in response.json()["detail"])


def test_sam_local_api_health_and_readiness(sam_api: str) -> None:
    health = httpx.get(f"{sam_api}/health", timeout=60)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    # the container reached this session's S3 and Redis over loopback
    ready = httpx.get(f"{sam_api}/ready", timeout=60).json()
    assert ready["ready"] is True
    assert ready["store"] == {"configured": True, "ready": True}
    assert ready["model"]["registry"].startswith("s3://sam-models-")


def msk_event_with_poison(suffix: str) -> tuple[dict[str, Any], list[str], bytes]:
    """events/kafka-msk.json with fresh transaction ids and one record that is not JSON."""
    event = copy.deepcopy(load_event("kafka-msk.json"))
    ids = []
    for records in event["records"].values():
        for record in records:
            value = json.loads(base64.b64decode(record["value"]))
            value["transaction_id"] = f"{value['transaction_id']}-{suffix}"
            ids.append(value["transaction_id"])
            record["value"] = base64.b64encode(json.dumps(value).encode()).decode()
    poison = f"not json {suffix}".encode()
    last = event["records"]["transactions-0"][-1]
    event["records"]["transactions-0"].append(
        {**last, "offset": last["offset"] + 1, "value": base64.b64encode(poison).decode()}
    )
    return event, ids, poison


def dead_letters(bootstrap: str) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        "fraud-dlq", bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()


def test_sam_local_invoke_stream_function_on_the_msk_event(
    sam_docker: Daemon, sam_env: Path, redis_server: Service, kafka_broker: Service, tmp_path: Path
) -> None:
    # GIVEN the MSK event with fresh ids and one poison record
    suffix = uuid.uuid4().hex[:8]
    event, ids, poison = msk_event_with_poison(suffix)
    path = tmp_path / "kafka-msk-poison.json"
    path.write_text(json.dumps(event))
    # WHEN sam local invoke runs the stream function on it
    argv = _sam(["local", "invoke", "StreamFunction", "--event", str(path)], sam_docker, sam_env)
    started = time.perf_counter()
    done = subprocess.run(
        argv, env={**sam_docker.env, **CREDENTIALS}, cwd=sam_dev.ROOT, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    _remove_recorded_containers(sam_docker, sam_env)
    # THEN no good record failed, the results are in Redis and the poison record was dead-lettered
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout) == {"batchItemFailures": []}, done.stderr[-4000:]
    r = redis.Redis.from_url(redis_server.url)
    stored = {t: r.get(keys.RESULT(t)) for t in ids}
    assert all(stored.values()), stored
    poisoned = [d for d in dead_letters(kafka_broker.url) if base64.b64decode(d["value_base64"]) == poison]
    assert len(poisoned) == 1
    assert poisoned[0]["topic"] == "transactions"
    print(f"sam local invoke StreamFunction: {elapsed:.1f} s")
