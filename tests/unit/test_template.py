"""template.yaml, parsed: security posture, handler paths and the stream error handling it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_model_bucket_is_private_versioned_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    statements = template["Resources"]["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny_tls = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    ]
    assert deny_tls
    assert deny_tls[0]["Principal"] == "*"
    assert not [s for s in statements if s["Effect"] == "Allow"]


def test_functions_only_read_the_model_prefix(template: dict[str, Any]) -> None:
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        first = fn["Properties"]["Policies"][0]["Statement"]
        actions = {s["Action"] for s in first}
        assert actions == {"s3:GetObject", "s3:ListBucket"}, name
        get = next(s for s in first if s["Action"] == "s3:GetObject")
        assert get["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/${ModelPrefix}/*"}


def test_handlers_and_code_paths_exist(template: dict[str, Any]) -> None:
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        props = fn["Properties"]
        module, _, func = props["Handler"].rpartition(".")
        source = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
        assert source.exists(), f"{name}: {source}"
        assert f"def {func}(" in source.read_text()
        assert (ROOT / props["CodeUri"] / "requirements.txt").exists()
    layer = template["Resources"]["FraudCoreLayer"]["Properties"]
    assert (ROOT / layer["ContentUri"] / "fraud_core" / "__init__.py").exists()
    lines = (ROOT / layer["ContentUri"] / "requirements.txt").read_text().splitlines()
    packages = {
        line.split(">")[0].split("=")[0].split("<")[0].strip()
        for line in lines
        if line and not line.startswith("#")
    }
    assert not packages & {"scikit-learn", "pandas", "joblib", "skl2onnx", "matplotlib", "scipy"}


def test_stream_mappings_retry_safely_and_keep_failures(template: dict[str, Any]) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    assert set(mappings) == {
        "MskEventSource",
        "SelfManagedEventSource",
        "MskLabelsEventSource",
        "SelfManagedLabelsEventSource",
    }
    for name, esm in mappings.items():
        props = esm["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert props["BisectBatchOnFunctionError"] is True
        assert 0 < props["MaximumRetryAttempts"] <= 100
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Ref": "StreamFailureTopic"}
        assert len(props["Topics"]) == 1, "an event-source mapping takes exactly one topic"


def test_every_api_route_is_wired(template: dict[str, Any]) -> None:
    from fraud_api.main import create_app

    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    wired = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events}
    app_routes = {(m, r.path) for r in create_app().routes for m in getattr(r, "methods", set()) - {"HEAD"}}
    assert {route for route in app_routes if not route[1].startswith("/docs/")} <= wired
