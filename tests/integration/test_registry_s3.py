"""Training → S3 registry → serving load, against a real S3 endpoint (moto_server over HTTP)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from fraud_core.errors import ArtifactIntegrityError
from fraud_core.manifest import ONNX_FILE, SKLEARN_FILE
from fraud_core.provider import ModelProvider, load_scorer
from fraud_core.registry import ModelRegistry, store_from_uri


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_train_publish_load_and_refuse_tampering(tiny_csv: Path, bucket: str, workdir: Path) -> None:
    uri = f"s3://{bucket}/registry"
    # GIVEN a model trained by the CLI straight into the S3 registry (endpoint from AWS_ENDPOINT_URL)
    trained = run_cli(
        "fraud_training.train",
        "--data",
        str(tiny_csv),
        "--registry",
        uri,
        "--model-name",
        "fraud",
        "--out-dir",
        str(workdir / "runs"),
        "--synthetic",
    )
    assert trained.returncode == 0, trained.stderr
    registry = ModelRegistry(store_from_uri(uri), "fraud")
    pointer = registry.pointer()
    assert pointer is not None
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"registry/fraud/{pointer.version}/{ONNX_FILE}" in keys
    assert "registry/fraud/current.json" in keys

    # WHEN serving loads it THEN it scores
    scorer = ModelProvider(registry).get()
    assert scorer.version == pointer.version
    listed = run_cli("fraud_training.registry", "--registry", uri, "--model-name", "fraud", "list")
    assert listed.returncode == 0 and pointer.version in listed.stdout
    assert (
        run_cli("fraud_training.registry", "--registry", uri, "--model-name", "fraud", "verify").returncode
        == 0
    )

    # WHEN an artifact is tampered with in the bucket THEN verify fails and loading refuses it
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=bucket,
        Key=f"registry/fraud/{pointer.version}/{SKLEARN_FILE}",
        Body=b"cos\nsystem\n(S'id'\ntR.",
    )
    verify = run_cli("fraud_training.registry", "--registry", uri, "--model-name", "fraud", "verify")
    assert verify.returncode == 1
    assert "model.joblib" in verify.stderr and "mismatch" in verify.stderr
    s3.put_object(Bucket=bucket, Key=f"registry/fraud/{pointer.version}/{ONNX_FILE}", Body=b"not onnx")
    with pytest.raises(ArtifactIntegrityError, match=r"model\.onnx: sha256 mismatch"):
        load_scorer(registry)


def test_promote_and_rollback_over_s3(tiny_csv: Path, bucket: str, workdir: Path) -> None:
    uri = f"s3://{bucket}"
    base = ["--data", str(tiny_csv), "--registry", uri, "--out-dir", str(workdir / "runs")]
    assert run_cli("fraud_training.train", *base, "--model", "logreg").returncode == 0
    assert run_cli("fraud_training.train", *base, "--model", "hgb", "--no-promote").returncode == 0
    registry = ModelRegistry(store_from_uri(uri), "creditcard-fraud")
    versions = registry.versions()
    assert len(versions) == 2
    current = registry.pointer()
    assert current is not None and registry.manifest(current.version).model_type == "logreg"
    other = next(v for v in versions if v != current.version)
    promote = run_cli("fraud_training.registry", "--registry", uri, "promote", other)
    assert promote.returncode == 0, promote.stderr
    assert registry.manifest(registry.pointer().version).model_type == "hgb"  # type: ignore[union-attr]
    assert run_cli("fraud_training.registry", "--registry", uri, "rollback").returncode == 0
    assert registry.pointer().version == current.version  # type: ignore[union-attr]
