"""What the stream processor needs from the outside world, and what it reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import KafkaItemIdentifier, PartialItemFailureResponse

NEW = "new"
"""Claim outcome of a transaction no earlier delivery claimed (or only observed)."""
CONFLICT = "conflict"
"""Claim outcome of an id already claimed with another payload: nothing is changed."""


class ResultSink(Protocol):
    """Where results, alerts and dead letters are published."""

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def flush(self) -> None:
        """Block until everything published is acknowledged; raise SinkUnavailableError otherwise."""
        ...


class Claim(NamedTuple):
    """A transaction a batch is about to score: its id, what the card counters add, and its
    payload's fingerprint (the same id with another one is a conflict)."""

    transaction_id: str
    card_id: str | None
    amount: float
    fingerprint: str


class StreamState(Protocol):
    """Exactly-once claims of transactions, their stored results, and the dead-letter ledger.

    A batch claims its transactions before the model scores them (the claim and the model then
    overlap) and stores the results once scored; it marks itself published after both and the
    producer's flush. A delivery that stopped in between is taken over by the next: its claims
    read ``pending`` and it stores what the earlier one did not."""

    def claim(self, items: Sequence[Claim], batch: str) -> list[str]:
        """Claim each item for ``batch`` and apply its card counters once; return per item
        :data:`NEW`, :data:`CONFLICT`, or the earlier delivery's state (``Dedupe.PENDING``:
        claimed, not yet published — now claimed by ``batch``; ``Dedupe.DONE``)."""
        ...

    def store_results(self, new: Sequence[tuple[str, str]], pending: Sequence[tuple[str, str]]) -> list[str]:
        """Store each (transaction id, result JSON): every ``new`` one, and each ``pending`` one
        unless an earlier delivery stored its result already. Return, per pending item, the result
        now stored (the earlier one, else the one given): what to republish."""
        ...

    def stored_results(self, transaction_ids: Sequence[str]) -> list[str | None]:
        """Stored results of many transactions in one round trip (labels are checked against them)."""
        ...

    def mark_published(self, batch: str) -> None:
        """Mark what ``batch`` claimed or found pending as published (one write)."""
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
