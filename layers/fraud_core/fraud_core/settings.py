"""One typed Settings for every component, read from ``FRAUD_*`` environment variables."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REGISTRY = "artifacts/registry"


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``FRAUD_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore", frozen=True)

    registry_uri: str = DEFAULT_REGISTRY
    """Model registry: ``s3://bucket/prefix`` or a local directory (relative to the working dir)."""
    model_name: str = "creditcard-fraud"
    """Name of the model inside the registry."""
    model_refresh_seconds: float = Field(default=60.0, ge=0.0)
    """How often a warm process re-reads ``current.json`` to pick up a promoted model (0 = every call)."""
    onnx_threads: int = Field(default=1, ge=1)
    """onnxruntime intra-op threads; 1 is fastest for the small batches a Lambda sees."""
    explain_top_k: int = Field(default=3, ge=0, le=30)
    """How many contributing features to return as ``reasons``."""
    batch_explain: Literal["flagged", "all", "none"] = "flagged"
    """Which transactions of a batch get reasons (each costs one extra model call per feature row)."""
    redis_url: SecretStr | None = None
    """``redis://`` or ``rediss://`` URL of the online store; unset = in-process store."""
    redis_url_secret_arn: str | None = None
    """Secrets Manager ARN whose SecretString is the Redis URL with its AUTH token (wins over redis_url);
    re-read every `parameters_max_age_seconds`, so a rotated token reaches new connections."""
    redis_timeout_seconds: float = Field(default=0.5, gt=0.0, le=10.0)
    """Socket connect/read timeout for Redis: an outage fails fast (degraded) instead of hanging."""
    result_ttl_seconds: int = Field(default=7 * 86_400, ge=60)
    """How long scored results stay readable by transaction id."""
    dedupe_ttl_seconds: int = Field(default=7 * 86_400, ge=60)
    """How long a transaction id (and a dead-lettered record) is remembered: redelivery within it is a no-op."""
    card_counters_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    """Idle time after which a card's counters (tx_count, amount_sum) expire."""
    online_ttl_seconds: int | None = Field(default=None, ge=3600)
    """TTL of a data shape's online window keys; default: the shape's longest window plus 7 days."""
    parameters_max_age_seconds: float = Field(default=300.0, ge=0.0)
    """How long a secret or parameter (API key, Redis URL) is cached before it is read again."""
    api_key: SecretStr | None = None
    """When set (directly, or resolved from `api_key_ssm_parameter`), the API requires `x-api-key`."""
    api_key_ssm_parameter: str | None = None
    """SSM parameter (SecureString) or Secrets Manager ARN holding the API key (cached `parameters_max_age_seconds`)."""
    labels_api_key: SecretStr | None = None
    """The key `POST /v1/labels` takes when API-key auth is on (labels steer decisions: own permission)."""
    labels_api_key_ssm_parameter: str | None = None
    """SSM parameter (SecureString) or Secrets Manager ARN holding the labels key."""
    labels_per_minute: int = Field(default=6000, ge=1)
    """Labels one client may post per minute (per API process; API Gateway throttles globally)."""
    label_log_max_len: int = Field(default=100_000, ge=1000)
    """Accepted labels kept in the Redis label ledger (fraud:labels), newest first out last."""
    api_max_batch: int = Field(default=1000, ge=1, le=10_000)
    """Most transactions accepted by `POST /v1/score/batch`."""
    api_max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413."""
    log_uri: str | None = "artifacts/logs"
    """Root of the scoring and label logs: ``s3://bucket/prefix`` or a directory; empty = no logs."""
    label_delay_days: int = Field(default=7, ge=0, le=365)
    """How long labels take to arrive: the monitor measures realised performance only on older days."""
    monitor_window_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    """Event-time window of each drift test (the schedule runs hourly; windows may overlap)."""
    monitor_alpha: float = Field(default=0.001, gt=0, lt=0.5)
    """False-alarm rate per monitored window, shared by its drift tests."""
    kafka_bootstrap_servers: str | None = None
    """Comma-separated Kafka bootstrap servers for publishing results; unset = in-process sink."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    """How the result publisher talks to the brokers (MSK: SSL on 9094, SASL_SSL with SCRAM on 9096)."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    """SASL mechanism with SASL_SSL (MSK's SCRAM secrets are SCRAM-SHA-512)."""
    kafka_sasl_secret_arn: str | None = None
    """Secrets Manager secret with JSON {"username", "password"} for SASL (the MSK SCRAM secret itself)."""
    scores_topic: str = "fraud-scores"
    """Every scored transaction is published here; empty string = don't publish scores."""
    alerts_topic: str = "fraud-alerts"
    """Review and decline decisions are published here."""
    dlq_topic: str = "fraud-dlq"
    """Poison records (not base64, not JSON, invalid) go here with the reason and original bytes."""

    console_alerts_max_len: int = Field(default=10_000, ge=100)
    """Recent alerts kept for the analyst console (``fraud:alerts`` stream, XADD MAXLEN ~)."""
    console_dead_letters_max_len: int = Field(default=1_000, ge=10)
    """Recent dead letters kept for the console, with a preview of their bytes (``fraud:dead-letters``)."""
    console_card_recent: int = Field(default=10, ge=0, le=100)
    """Latest transactions kept per card for the console's case view (0 = none: one command less per event)."""
    console_poll_seconds: float = Field(default=5.0, ge=0.5, le=300.0)
    """How often the console's queue and live panel refresh in the browser."""
    console_session_secret: SecretStr | None = None
    """Signs the console's session cookie; unset = derived from the API key (rotating the key ends sessions),
    or a per-process random secret when no key is configured."""
    console_session_secret_ssm_parameter: str | None = None
    """SSM parameter (SecureString) or Secrets Manager ARN holding the session secret (wins when set)."""
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    """How long a console login lasts."""

    @field_validator("api_key", "labels_api_key")
    @classmethod
    def _key_not_empty(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Fail closed: an empty key set by mistake must not silently mean "no authentication".
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                f"FRAUD_{str(info.field_name).upper()} is set but empty; unset it to run without it"
            )
        return value


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import time)."""
    return Settings()
