"""Records of a Lambda Kafka event (Amazon MSK or self-managed).

The hot path reads the event's plain dicts (Powertools' data classes cost ~20 µs a record in
wrapper objects, measured on 1,000-record batches); headers, which only diagnostics need, are
decoded lazily with Powertools' ``KafkaEventRecord``. Values are decoded with pybase64 (SIMD):
1.3 ms for 1,000 records of ~850 bytes against 5.8 ms with the standard library's strict
``binascii`` (measured), with validation as strict or stricter (see ``_strict_b64``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pybase64
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord

from fraud_core.errors import FraudCoreError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import KafkaItemIdentifier

EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka")


class InvalidEventError(FraudCoreError, ValueError):
    """The event itself (not one record) does not have the Kafka event-source shape."""


class KafkaRecord(NamedTuple):
    """One record: ``value`` is its bytes, or None when the base64 is invalid (a poison record).

    The batch's per-record types are named tuples: as immutable as a frozen dataclass, built in
    a third of the time (~0.7 against ~2 µs, thousands per batch)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    raw_value: str
    source: Mapping[str, Any]
    """The record as the event carries it."""

    @property
    def identifier(self) -> KafkaItemIdentifier:
        """How the event-source mapping names this record in ``batchItemFailures``."""
        return {"partition": f"{self.topic}-{self.partition}", "offset": self.offset}

    @property
    def record_id(self) -> str:
        """``topic-partition-offset``: stable across redeliveries."""
        return f"{self.topic}-{self.partition}-{self.offset}"

    @property
    def headers(self) -> dict[str, bytes]:
        return dict(KafkaEventRecord(dict(self.source)).decoded_headers)


def _strict_b64(value: Any) -> bytes | None:
    """Bytes of a base64 string, None unless it is strictly valid.

    Powertools' ``decoded_value`` uses lenient ``b64decode``, which drops stray characters and
    would score a corrupted record; validation refuses any character outside the alphabet and
    any wrong padding, including ``=`` after a complete group, which ``binascii``'s strict mode let
    through (the record goes to the DLQ).
    """
    if not isinstance(value, str):
        return None
    try:
        return pybase64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, whatever the reason
        return None


def kafka_records(event: Mapping[str, Any]) -> list[KafkaRecord]:
    """Records in delivery order (partition by partition, offsets ascending)."""
    source = event.get("eventSource")
    if source not in EVENT_SOURCES:
        raise InvalidEventError(f"eventSource {source!r} is not one of {EVENT_SOURCES}")
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise InvalidEventError("event has no 'records' object")
    return [
        KafkaRecord(
            topic=rec["topic"],
            partition=rec["partition"],
            offset=rec["offset"],
            key=_strict_b64(rec.get("key")),
            value=_strict_b64(rec.get("value")),
            raw_value=str(rec.get("value", "")),
            source=rec,
        )
        for chunk in groups.values()
        for rec in chunk
    ]
