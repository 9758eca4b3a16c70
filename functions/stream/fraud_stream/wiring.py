"""Composition root of the stream function: concrete adapters chosen from settings, built once."""

from __future__ import annotations

import gc
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from fraud_core.event_log import Logs
from fraud_core.online.activity import ActivityLog, activity_log
from fraud_core.online.client import connect
from fraud_core.online.labels import InMemoryLabelLedger, LabelLedger, RedisLabelLedger
from fraud_core.provider import ModelProvider
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings
from fraud_core.shapes import DataShape
from fraud_core.stream.ports import ResultSink, StreamState, Topics
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState, RedisStreamState

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)


@cache
def get_redis() -> Redis | None:
    """The one Redis client of the process (None: embedded mode, state in process memory)."""
    s = get_settings()
    url = s.redis_url.get_secret_value() if s.redis_url else None
    return connect(
        url,
        secret_name=s.redis_url_secret_arn,
        timeout_seconds=s.redis_timeout_seconds,
        max_age_seconds=s.parameters_max_age_seconds,
    )


@cache
def get_model_provider() -> ModelProvider:
    s = get_settings()
    registry = open_registry(s.registry_uri, s.model_name)
    return ModelProvider(
        registry, refresh_seconds=s.model_refresh_seconds, threads=s.onnx_threads, top_k=s.explain_top_k
    )


@cache
def get_state() -> StreamState:
    """Dedupe keys, stored results and card counters: Redis when configured, else process memory."""
    client = get_redis()
    if client is None:
        logger.info("no FRAUD_REDIS_URL configured, stream state kept in process memory")
        return InMemoryStreamState()
    s = get_settings()
    return RedisStreamState(
        client,
        dedupe_ttl_seconds=s.dedupe_ttl_seconds,
        result_ttl_seconds=s.result_ttl_seconds,
        card_counters_ttl_seconds=s.card_counters_ttl_seconds,
    )


@cache
def get_online_state(shape: DataShape) -> Any:
    """The online state the data shape's features need, on the process's Redis client."""
    return shape.online_state(get_redis(), ttl_seconds=get_settings().online_ttl_seconds)


@cache
def get_label_ledger() -> LabelLedger:
    """Where accepted labels are recorded with their source topic."""
    client = get_redis()
    if client is None:
        return InMemoryLabelLedger()
    s = get_settings()
    return RedisLabelLedger(client, max_len=s.label_log_max_len, ttl_seconds=s.result_ttl_seconds)


@cache
def get_activity() -> ActivityLog:
    """What the analyst console shows: recent alerts, dead letters, live counts, cards' latest."""
    return activity_log(get_redis(), get_settings())


@cache
def get_logs() -> Logs | None:
    """The scoring and label logs (the monitor's and retraining's input); None when disabled."""
    uri = get_settings().log_uri
    return Logs.at(uri) if uri else None


@cache
def get_sink() -> ResultSink:
    settings = get_settings()
    if not settings.kafka_bootstrap_servers:
        logger.info("no FRAUD_KAFKA_BOOTSTRAP_SERVERS configured, results collected in process memory")
        return InMemorySink()
    from fraud_core.stream.sinks import KafkaSink, kafka_security

    credentials: dict[str, str] = {}
    if settings.kafka_security_protocol.startswith("SASL"):
        if not settings.kafka_sasl_secret_arn:
            raise ValueError("FRAUD_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs FRAUD_KAFKA_SASL_SECRET_ARN")
        from aws_lambda_powertools.utilities.parameters import get_secret

        secret = get_secret(
            settings.kafka_sasl_secret_arn, transform="json", max_age=int(settings.parameters_max_age_seconds)
        )
        credentials = {"username": str(secret["username"]), "password": str(secret["password"])}
    security = kafka_security(
        settings.kafka_security_protocol, mechanism=settings.kafka_sasl_mechanism, **credentials
    )
    return KafkaSink(settings.kafka_bootstrap_servers, security=security)


YOUNG_COLLECTION_THRESHOLD = 20_000
"""Net new container objects before the collector looks at the youngest generation (Python's
default is 700)."""


@cache
def freeze_startup_heap() -> None:
    """Move everything the cold start allocated (libraries, model, clients) out of the garbage
    collector's sight, once: full collections then walk only what batches allocate. Measured on
    1,000-event batches: +40 % events/s in a process with a large heap (the benchmark), less in a
    lean one. What is frozen stays alive, which is what startup objects do anyway.

    Then let a batch's objects die before the collector looks at them: a 1,000-event batch holds
    tens of thousands of dicts and tuples until it returns, and at the default threshold the
    collector walked them ~23 times a batch (1.9 ms of ~50). Freed by reference counting, they
    never reach the threshold; garbage in cycles still does, so it is still collected."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def get_processor() -> StreamProcessor:
    """A processor on the current model (re-checked per the provider's refresh interval)."""
    settings = get_settings()
    topics = Topics(
        scores=settings.scores_topic or None, alerts=settings.alerts_topic, dlq=settings.dlq_topic
    )
    scorer = get_model_provider().get()
    processor = StreamProcessor(
        scorer,
        get_state(),
        get_sink(),
        topics=topics,
        online=get_online_state(scorer.shape),
        ledger=get_label_ledger(),
        logs=get_logs(),
        activity=get_activity(),
    )
    freeze_startup_heap()
    return processor


FACTORIES = (
    get_settings,
    get_redis,
    get_model_provider,
    get_state,
    get_online_state,
    get_label_ledger,
    get_logs,
    get_sink,
    get_activity,
)
"""Every cached factory of this function (tests and the demo reset them between configurations)."""


def reset() -> None:
    """Forget every cached adapter (tests, and the demo switching configurations)."""
    for factory in FACTORIES:
        factory.cache_clear()
