"""Integration tier: real services on free loopback ports, started by these fixtures."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_devstack.services import Service
from tests.conftest import MODEL_NAME, TrainedModel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def s3_endpoint(moto_server: Service, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every boto3 client at moto_server through AWS_ENDPOINT_URL, as a user would."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server.url


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh bucket per test."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def s3_registry(trained: TrainedModel, bucket: str) -> str:
    """The session's trained model, published into a fresh bucket of the real S3 endpoint."""
    uri = f"s3://{bucket}/models"
    src = trained.registry
    manifest = src.current_manifest()[1]
    ModelRegistry(store_from_uri(uri), MODEL_NAME).publish(
        manifest, {name: src.read_verified(manifest, name) for name in manifest.files}
    )
    return uri
