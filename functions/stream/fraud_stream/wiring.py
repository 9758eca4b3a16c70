"""Composition root of the stream function: concrete adapters chosen from settings, built once."""

from __future__ import annotations

import logging
from functools import cache

from fraud_core.entity_online import get_entity_state
from fraud_core.provider import get_model_provider
from fraud_core.settings import get_settings
from fraud_core.stores import redis_client, redis_url_from_settings
from fraud_core.stream import (
    InMemorySink,
    InMemoryStreamState,
    ResultSink,
    StreamProcessor,
    StreamState,
    Topics,
)

logger = logging.getLogger(__name__)


@cache
def _redis_url() -> str | None:
    return redis_url_from_settings(get_settings())


@cache
def get_state() -> StreamState:
    """Dedupe keys and stored results: Redis when configured, else process memory."""
    url = _redis_url()
    if url is None:
        logger.info("no FRAUD_REDIS_URL configured, stream state kept in process memory")
        return InMemoryStreamState()
    from fraud_core.stream import RedisStreamState

    settings = get_settings()
    client = redis_client(url, timeout_seconds=settings.redis_timeout_seconds)
    return RedisStreamState(client, result_ttl=settings.result_ttl_seconds)


@cache
def get_sink() -> ResultSink:
    settings = get_settings()
    if not settings.kafka_bootstrap_servers:
        logger.info("no FRAUD_KAFKA_BOOTSTRAP_SERVERS configured, results collected in process memory")
        return InMemorySink()
    from fraud_core.kafka_sink import KafkaSink

    return KafkaSink(settings.kafka_bootstrap_servers)


def get_processor() -> StreamProcessor:
    """A processor on the current model (re-checked per the provider's refresh interval)."""
    settings = get_settings()
    topics = Topics(
        scores=settings.scores_topic or None, alerts=settings.alerts_topic, dlq=settings.dlq_topic
    )
    return StreamProcessor(
        get_model_provider().get(), get_state(), get_sink(), topics=topics, entities=get_entity_state()
    )


def reset() -> None:
    """Forget every cached adapter (tests, and the demo switching configurations)."""
    for factory in (_redis_url, get_state, get_entity_state, get_sink):
        factory.cache_clear()
