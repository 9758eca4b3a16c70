"""The label ledger: every accepted label with who sent it and when (a capped Redis stream).

Labels are how a model improves and how a windowed shape's terminal risk moves, so each one is
kept with its author; a later label for the same transaction (fraud → legitimate) is a
correction, visible as the newer entry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fraud_core.labels import Label
from fraud_core.online import keys
from fraud_core.online.client import redis_call

if TYPE_CHECKING:
    from redis import Redis

LEDGER = keys.PREFIX + ":labels"
"""Redis stream of accepted labels (one key; XADD with an approximate MAXLEN)."""


class LabelLedger(Protocol):
    def record(self, labels: Sequence[Label], *, author: str) -> None: ...

    def latest(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The newest label of each transaction (``is_fraud``, ``author``, ``at``), None if unlabelled;
        one round trip (the console marks labelled alerts with it)."""
        ...


def _entry(label: Label, author: str, now: float) -> dict[str, str]:
    return {
        "transaction_id": label.transaction_id,
        "is_fraud": "1" if label.is_fraud else "0",
        "terminal_id": label.terminal_id or "",
        "tx_datetime": "" if label.epoch is None else str(label.epoch),
        "author": author,
        "at": f"{now:.3f}",
    }


def _latest(label: Label, author: str, now: float) -> bytes:
    return orjson.dumps({"is_fraud": label.is_fraud, "author": author, "at": round(now, 3)})


class RedisLabelLedger:
    def __init__(self, client: Redis, *, max_len: int = 100_000, ttl_seconds: int = 7 * 86_400) -> None:
        self.client = client
        self.max_len = max_len
        self.ttl_seconds = ttl_seconds

    def record(self, labels: Sequence[Label], *, author: str) -> None:
        if not labels:
            return
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        for label in labels:
            pipe.xadd(LEDGER, _entry(label, author, now), maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]
            # The latest label by id, in the same round trip: the ledger stream answers "who said
            # what, when", this key answers "is it labelled" without scanning the stream.
            pipe.set(keys.LABEL(label.transaction_id), _latest(label, author, now), ex=self.ttl_seconds)
        redis_call("label ledger", pipe.execute)

    def latest(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not transaction_ids:
            return []
        raw = redis_call("MGET labels", self.client.mget, [keys.LABEL(t) for t in transaction_ids])
        return [None if r is None else dict(orjson.loads(r)) for r in raw]


@dataclass
class InMemoryLabelLedger:
    entries: list[dict[str, str]] = field(default_factory=list)

    def record(self, labels: Sequence[Label], *, author: str) -> None:
        now = time.time()
        self.entries.extend(_entry(label, author, now) for label in labels)

    def latest(self, transaction_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        newest = {
            e["transaction_id"]: {
                "is_fraud": e["is_fraud"] == "1",
                "author": e["author"],
                "at": float(e["at"]),
            }
            for e in self.entries
        }
        return [newest.get(t) for t in transaction_ids]
