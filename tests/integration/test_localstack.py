"""Optional: LocalStack on the host (S3 + CloudFormation, no Docker) deploys the template's model
bucket, and the registry round trip runs against it. Skipped, with the reason, when LocalStack
is not installed (`make localstack-venv`) or does not start."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from fraud_core.errors import ArtifactIntegrityError
from fraud_core.manifest import ONNX_FILE
from fraud_core.provider import load_scorer
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_devstack.services import free_port, start_process, stop_process
from fraud_training.data import to_records
from tests.cfn import load_template
from tests.conftest import MODEL_NAME, TrainedModel

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK_PYTHON = Path(
    os.environ.get("FRAUD_LOCALSTACK_PYTHON", ROOT / ".venv-localstack" / "bin" / "python")
)


@pytest.fixture(scope="module")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not LOCALSTACK_PYTHON.exists():
        pytest.skip(f"LocalStack not installed at {LOCALSTACK_PYTHON} (run `make localstack-venv`)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("localstack")
    env = {
        **os.environ,
        "GATEWAY_SERVER": "hypercorn",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "OVERRIDE_IN_DOCKER": "0",
        "DNS_ADDRESS": "0",
        "SERVICES": "s3,cloudformation",
        "LOCALSTACK_VOLUME_DIR": str(workdir / "volume"),
        "TMPDIR": str(workdir),
    }
    with (workdir / "localstack.log").open("wb") as log:
        proc = start_process(
            [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"], cwd=workdir, env=env, stdout=log
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            health = httpx.get(f"{url}/_localstack/health", timeout=2).json()
            ready = health["services"].get("cloudformation") in ("available", "running")
        except (httpx.HTTPError, ValueError, KeyError):
            ready = False
        if ready:
            break
        time.sleep(0.5)
    if not ready:
        stop_process(proc, timeout=1)
        pytest.skip(f"LocalStack did not start: {(workdir / 'localstack.log').read_text()[-500:]}")
    yield url
    # Its shutdown can take long on a loaded machine: bounded, then the whole group is killed.
    stop_process(proc, timeout=15)


def test_template_bucket_deploys_through_cloudformation_and_serves_the_registry(
    localstack: str, trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "AWS_ENDPOINT_URL": localstack,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    full = load_template()
    resources = {k: full["Resources"][k] for k in ("ModelBucket", "ModelBucketPolicy")}
    body = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": resources,
        "Outputs": {"Bucket": {"Value": {"Ref": "ModelBucket"}}},
    }
    cfn = boto3.client("cloudformation")
    name = f"fraud-bucket-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(body))
    cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    outputs = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    bucket = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "Bucket")

    s3 = boto3.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert any(st["Effect"] == "Deny" for st in policy["Statement"])

    uri = f"s3://{bucket}/models"
    src = trained.registry
    manifest = src.current_manifest()[1]
    registry = ModelRegistry(store_from_uri(uri), MODEL_NAME)
    registry.publish(manifest, {n: src.read_verified(manifest, n) for n in manifest.files})
    records = to_records(trained.frame.head(5))
    assert [r.fraud_score for r in load_scorer(registry).score_batch(records)] == [
        r.fraud_score for r in trained.scorer().score_batch(records)
    ]
    s3.put_object(Bucket=bucket, Key=f"models/{MODEL_NAME}/{manifest.version}/{ONNX_FILE}", Body=b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="sha256 mismatch"):
        load_scorer(registry)
