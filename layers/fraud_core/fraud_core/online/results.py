"""What the HTTP function reads back: stored results by transaction id and counters by card."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fraud_core.online import keys
from fraud_core.online.client import redis_call

if TYPE_CHECKING:
    from redis import Redis

CardCounters = dict[str, float]
"""``tx_count`` and ``amount_sum`` of a card, as the stream function counts them (not model features)."""


class ResultStore(Protocol):
    """Results stored by the stream function, and its per-card counters."""

    def get_result(self, transaction_id: str) -> dict[str, Any] | None: ...

    def get_results(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Many stored results in one round trip."""
        ...

    def card_counters(self, card_ids: Sequence[str]) -> dict[str, CardCounters]:
        """Counters of each known card (unknown cards are absent), in one round trip."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailableError when the store cannot be reached or refuses writes."""
        ...


class InMemoryResultStore:
    """Process-local store: the embedded default when no Redis is configured, and a test fake."""

    def __init__(
        self, *, result_ttl_seconds: float = 7 * 86_400, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._results: dict[str, tuple[float, dict[str, Any]]] = {}
        self.cards: dict[str, CardCounters] = {}
        self._ttl = result_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def get_result(self, transaction_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._results.get(transaction_id)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def get_results(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.get_result(t) for t in transaction_ids]

    def put_results(self, results: Sequence[dict[str, Any]]) -> None:
        """Store results as the stream function would (tests, demos)."""
        expires = self._clock() + self._ttl
        with self._lock:
            for r in results:
                self._results[str(r["transaction_id"])] = (expires, r)

    def card_counters(self, card_ids: Sequence[str]) -> dict[str, CardCounters]:
        return {c: dict(self.cards[c]) for c in card_ids if c in self.cards}

    def ping(self) -> None:
        return None


class RedisResultStore:
    """Reads the keys the stream function writes. Every call fails fast (short socket timeouts)."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    def get_result(self, transaction_id: str) -> dict[str, Any] | None:
        raw = redis_call("GET", self.client.get, keys.RESULT(transaction_id))
        return None if raw is None else dict(orjson.loads(raw))

    def get_results(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not transaction_ids:
            return []
        raw = redis_call("MGET", self.client.mget, [keys.RESULT(t) for t in transaction_ids])
        return [None if r is None else dict(orjson.loads(r)) for r in raw]

    def card_counters(self, card_ids: Sequence[str]) -> dict[str, CardCounters]:
        if not card_ids:
            return {}
        # One non-transactional pipeline: a single round trip for the whole batch.
        pipe = self.client.pipeline(transaction=False)
        for c in card_ids:
            pipe.hgetall(keys.CARD(c))
        rows = redis_call("HGETALL pipeline", pipe.execute)
        return {
            c: {k.decode(): float(v) for k, v in row.items()}
            for c, row in zip(card_ids, rows, strict=True)
            if row
        }

    def ping(self) -> None:
        # A write, not PING: a Redis at `maxmemory` answers PING but refuses what the stream writes.
        redis_call("write probe", lambda: self.client.set(keys.PROBE("ready"), "1", ex=60))
