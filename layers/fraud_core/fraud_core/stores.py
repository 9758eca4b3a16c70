"""Online store ports (results by transaction, features by card) with Redis and in-memory adapters.

Redis layout (Feast-style, one key per entity, TTL on every key)::

    fraud:txn:{transaction_id}   string: JSON score result          TTL: result_ttl_seconds
    fraud:card:{card_id}         hash: online features of the card  TTL: feature_ttl_seconds
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from fraud_core.errors import FraudCoreError
from fraud_core.settings import Settings, get_settings

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "fraud"


def txn_key(transaction_id: str) -> str:
    return f"{KEY_PREFIX}:txn:{transaction_id}"


def card_key(card_id: str) -> str:
    return f"{KEY_PREFIX}:card:{card_id}"


class StoreUnavailableError(FraudCoreError):
    """The online store cannot be reached (timeout, connection refused...)."""


class ResultStore(Protocol):
    """Scored transactions by id."""

    def get_result(self, transaction_id: str) -> dict[str, Any] | None: ...

    def put_results(self, results: Sequence[dict[str, Any]]) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailableError when the store cannot be reached."""
        ...


class FeatureStore(Protocol):
    """Online features by card."""

    def read_card_features(self, card_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """Features of each known card (unknown cards are absent), in one round trip."""
        ...


class InMemoryStore:
    """Process-local store: the embedded default when no Redis is configured, and a test fake."""

    def __init__(self, *, result_ttl_seconds: float = 7 * 86_400, clock: Any = time.monotonic) -> None:
        self._results: dict[str, tuple[float, dict[str, Any]]] = {}
        self.cards: dict[str, dict[str, float]] = {}
        self._ttl = result_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def get_result(self, transaction_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._results.get(transaction_id)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def put_results(self, results: Sequence[dict[str, Any]]) -> None:
        expires = self._clock() + self._ttl
        with self._lock:
            for r in results:
                self._results[str(r["transaction_id"])] = (expires, r)

    def ping(self) -> None:
        return None

    def read_card_features(self, card_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        return {c: dict(self.cards[c]) for c in card_ids if c in self.cards}


class RedisStore:
    """Redis adapter. Every call has short socket timeouts, so an outage fails fast instead of hanging."""

    def __init__(self, client: Redis, *, result_ttl_seconds: int = 7 * 86_400) -> None:
        self.client = client
        self.result_ttl_seconds = result_ttl_seconds

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return fn(*args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"redis {what} failed: {exc}") from exc

    def get_result(self, transaction_id: str) -> dict[str, Any] | None:
        raw = self._call("GET", self.client.get, txn_key(transaction_id))
        return None if raw is None else dict(json.loads(raw))

    def put_results(self, results: Sequence[dict[str, Any]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for r in results:
            pipe.set(txn_key(str(r["transaction_id"])), json.dumps(r), ex=self.result_ttl_seconds)
        self._call("SET pipeline", pipe.execute)

    def ping(self) -> None:
        self._call("PING", self.client.ping)

    def read_card_features(self, card_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        if not card_ids:
            return {}
        # One non-transactional pipeline: a single round trip for the whole batch.
        pipe = self.client.pipeline(transaction=False)
        for c in card_ids:
            pipe.hgetall(card_key(c))
        rows = self._call("HGETALL pipeline", pipe.execute)
        return {
            c: {k.decode(): float(v) for k, v in row.items()}
            for c, row in zip(card_ids, rows, strict=True)
            if row
        }


def redis_client(url: str, *, timeout_seconds: float = 0.5) -> Redis:
    """A redis-py client with short timeouts (imported lazily: ~0.4 s of cold start).

    One retry on a connection error: after a Redis restart the pooled sockets are dead, and the
    first command on each would otherwise fail although the server is back.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        health_check_interval=30,
    )


class OnlineStore(ResultStore, FeatureStore, Protocol):
    """Both ports, as one Redis (or in-memory) backend provides them."""


def redis_url_from_settings(settings: Settings) -> str | None:
    """The configured Redis URL: from Secrets Manager when an ARN is given, else FRAUD_REDIS_URL."""
    if settings.redis_url_secret_arn:
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=settings.redis_url_secret_arn)
        return str(secret["SecretString"]).strip()
    return settings.redis_url.get_secret_value() if settings.redis_url else None


def store_from_settings(settings: Settings) -> OnlineStore:
    url = redis_url_from_settings(settings)
    if url is None:
        logger.info("no FRAUD_REDIS_URL configured, using an in-process store (results are not shared)")
        return InMemoryStore(result_ttl_seconds=settings.result_ttl_seconds)
    client = redis_client(url, timeout_seconds=settings.redis_timeout_seconds)
    return RedisStore(client, result_ttl_seconds=settings.result_ttl_seconds)


@cache
def get_online_store() -> OnlineStore:
    """The process-wide online store, built from settings on first use."""
    return store_from_settings(get_settings())
