"""Secrets and parameters through Powertools Parameters: rotation without a redeploy, fail closed."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from pydantic import ValidationError

from fraud_api import deps
from fraud_api.main import create_app
from fraud_core.online.client import SecretCredentials, connect
from fraud_core.provider import ModelProvider
from fraud_core.settings import Settings
from tests.conftest import TrainedModel
from tests.events import load_event

PREDICT = load_event("apigw-v2-predict.json")["body"]


@pytest.fixture(autouse=True)
def aws() -> Iterator[None]:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def test_empty_api_key_is_refused_not_read_as_no_auth() -> None:
    with pytest.raises(ValidationError, match="set but empty"):
        Settings(api_key="  ")


def test_empty_api_key_parameter_stops_the_api_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("ssm").put_parameter(Name="/fraud/api-key", Value=" ", Type="SecureString")
    monkeypatch.setenv("FRAUD_API_KEY_SSM_PARAMETER", "/fraud/api-key")
    deps.get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="is empty; refusing to start"):
            create_app()
    finally:
        deps.get_settings.cache_clear()


@pytest.mark.parametrize(("max_age", "rotation_seen"), [(0, True), (300, False)])
def test_rotated_api_key_is_picked_up_after_max_age(
    trained: TrainedModel, max_age: int, rotation_seen: bool
) -> None:
    # GIVEN the API key in SSM, cached for `max_age` seconds
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/fraud/api-key", Value="key-1", Type="SecureString")
    settings = Settings(api_key_ssm_parameter="/fraud/api-key", parameters_max_age_seconds=max_age)
    app = create_app()
    provider = ModelProvider(trained.registry)
    app.dependency_overrides[deps.settings] = lambda: settings
    app.dependency_overrides[deps.provider] = lambda: provider
    client = TestClient(app)
    headers = {"content-type": "application/json"}
    assert (
        client.post("/predict", content=PREDICT, headers={**headers, "x-api-key": "key-1"}).status_code == 200
    )
    # WHEN the key is rotated
    ssm.put_parameter(Name="/fraud/api-key", Value="key-2", Type="SecureString", Overwrite=True)
    new = client.post("/predict", content=PREDICT, headers={**headers, "x-api-key": "key-2"}).status_code
    old = client.post("/predict", content=PREDICT, headers={**headers, "x-api-key": "key-1"}).status_code
    # THEN the new key works once the cached value is older than max_age (never both at once)
    assert (new, old) == ((200, 401) if rotation_seen else (401, 200))


def test_redis_auth_comes_from_the_secret_and_follows_its_rotation() -> None:
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="fraud/redis", SecretString="rediss://:tok%2F1@redis.internal:6380/0")["ARN"]
    credentials = SecretCredentials(arn, max_age_seconds=0)
    # The host comes from the secret, without the token; the token goes through the provider
    assert credentials.address() == "rediss://redis.internal:6380/0"
    assert credentials.get_credentials() == ("tok/1",)
    sm.put_secret_value(SecretId=arn, SecretString="rediss://app:tok2@redis.internal:6380/0")
    assert credentials.get_credentials() == ("app", "tok2")
    sm.put_secret_value(SecretId=arn, SecretString="redis://redis.internal:6380/0")
    assert credentials.get_credentials() == (), "no AUTH when the URL carries none"


def test_one_client_built_from_the_secret_without_connecting() -> None:
    arn = boto3.client("secretsmanager").create_secret(
        Name="fraud/redis", SecretString="redis://:tok@127.0.0.1:6390/2"
    )["ARN"]
    client = connect("redis://ignored:1", secret_name=arn, timeout_seconds=0.2, max_age_seconds=60)
    assert client is not None
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 2)
    assert "password" not in kwargs or kwargs["password"] is None
    assert isinstance(kwargs["credential_provider"], SecretCredentials)
    assert connect(None, secret_name=None, timeout_seconds=0.2, max_age_seconds=60) is None


def test_cli_failures_are_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fraud_core.cli import run_cli

    def needs_settings(_: list[str] | None) -> int:
        Settings(api_key="")
        return 0

    assert run_cli(needs_settings, []) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: invalid configuration or input (api_key: Value error, FRAUD_API_KEY is set but empty"
    )
    assert "\n" not in err and "Traceback" not in err
    with pytest.raises(ValidationError):
        run_cli(needs_settings, ["--debug"])


def test_result_publisher_speaks_sasl_scram_with_the_msk_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    from fraud_stream import wiring

    created: dict[str, object] = {}

    class Producer:
        def __init__(self, config: dict[str, object]) -> None:
            created.update(config)

    arn = boto3.client("secretsmanager").create_secret(
        Name="AmazonMSK_fraud", SecretString='{"username": "fraud", "password": "s3cr3t"}'
    )["ARN"]
    monkeypatch.setattr(confluent_kafka, "Producer", Producer)
    monkeypatch.setenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", "b-1.example:9096,b-2.example:9096")
    monkeypatch.setenv("FRAUD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FRAUD_KAFKA_SASL_SECRET_ARN", arn)
    wiring.reset()
    try:
        wiring.get_sink()
    finally:
        wiring.reset()
    assert created["bootstrap.servers"] == "b-1.example:9096,b-2.example:9096"
    assert (created["security.protocol"], created["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (created["sasl.username"], created["sasl.password"]) == ("fraud", "s3cr3t")
    assert created["ssl.ca.location"] == "probe"  # TLS verified against the system's CAs


def test_sasl_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraud_stream import wiring

    monkeypatch.setenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", "b-1.example:9096")
    monkeypatch.setenv("FRAUD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    wiring.reset()
    try:
        with pytest.raises(ValueError, match="needs FRAUD_KAFKA_SASL_SECRET_ARN"):
            wiring.get_sink()
    finally:
        wiring.reset()
