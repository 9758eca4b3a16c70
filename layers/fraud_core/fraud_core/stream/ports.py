"""What the stream processor needs from the outside world, and what it reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import KafkaItemIdentifier, PartialItemFailureResponse

NEW = "new"
"""Commit outcome of a transaction no earlier delivery got as far as storing."""
CONFLICT = "conflict"
"""Commit outcome of an id already stored with another payload: nothing is changed."""


class ResultSink(Protocol):
    """Where results, alerts and dead letters are published."""

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def flush(self) -> None:
        """Block until everything published is acknowledged; raise SinkUnavailableError otherwise."""
        ...


class CommitItem(NamedTuple):
    """A scored transaction to store: its result (as published) and what the card counters add."""

    transaction_id: str
    result_json: str
    card_id: str | None
    amount: float
    fingerprint: str
    """The payload's fingerprint: the same id with another one is a conflict."""


class StreamState(Protocol):
    """Idempotent commit of scored transactions, and the dead-letter ledger."""

    def commit(self, items: Sequence[CommitItem], batch: str) -> list[str]:
        """Apply each new item once; return per item :data:`NEW`, :data:`CONFLICT`, or the
        earlier delivery's state (``Dedupe.PENDING``: committed, not yet published; ``Dedupe.DONE``).
        New and pending items are then marked published with ``batch`` (unique per attempt)."""
        ...

    def stored_result(self, transaction_id: str) -> str | None: ...

    def stored_results(self, transaction_ids: Sequence[str]) -> list[str | None]:
        """Stored results of many transactions in one round trip (labels are checked against them)."""
        ...

    def mark_published(self, batch: str) -> None:
        """Mark what ``batch`` committed or found pending as published (one write)."""
        ...

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        """Which poison records (``topic-partition-offset``) were already dead-lettered."""
        ...

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class Topics:
    scores: str | None = "fraud-scores"
    alerts: str = "fraud-alerts"
    dlq: str = "fraud-dlq"


DEFAULT_TOPICS = Topics()


@dataclass
class BatchReport:
    """What happened to a batch; ``failures`` go back to Lambda as ``batchItemFailures``."""

    received: int = 0
    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    """Ids seen before with another payload: dead-lettered as ``id_conflict``, never dropped silently."""
    alerts: int = 0
    labels: int = 0
    failures: list[KafkaItemIdentifier] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def response(self) -> PartialItemFailureResponse:
        """The partial-batch response the Kafka event-source mapping expects."""
        return {"batchItemFailures": [{"itemIdentifier": f} for f in self.failures]}
