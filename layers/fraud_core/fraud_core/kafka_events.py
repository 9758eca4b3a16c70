"""Decode Lambda Kafka event-source events (Amazon MSK and self-managed Kafka) into records."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fraud_core.errors import FraudCoreError

EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka")


class InvalidEventError(FraudCoreError, ValueError):
    """The event itself (not one record) does not have the Kafka event-source shape."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record of the event; ``value`` is the raw bytes (or None when not valid base64)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    raw_value: str
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def identifier(self) -> dict[str, Any]:
        """How the event-source mapping names this record in ``batchItemFailures``."""
        return {"partition": f"{self.topic}-{self.partition}", "offset": self.offset}


def _b64(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        # binascii directly: base64.b64decode's argument normalisation costs more than decoding
        return binascii.a2b_base64(
            value.encode("ascii") if isinstance(value, str) else value, strict_mode=True
        )
    except (binascii.Error, ValueError, TypeError, UnicodeEncodeError):
        return None


def iter_records(event: Mapping[str, Any]) -> Iterator[KafkaRecord]:
    """Records in delivery order (partition by partition, offsets ascending)."""
    source = event.get("eventSource")
    if source not in EVENT_SOURCES:
        raise InvalidEventError(f"eventSource {source!r} is not one of {EVENT_SOURCES}")
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise InvalidEventError("event has no 'records' object")
    for group in groups.values():
        for rec in group:
            headers: dict[str, bytes] = {}
            for h in rec.get("headers") or []:
                for name, raw in h.items():
                    headers[name] = bytes(raw)
            yield KafkaRecord(
                topic=str(rec["topic"]),
                partition=int(rec["partition"]),
                offset=int(rec["offset"]),
                timestamp=int(rec.get("timestamp", 0)),
                key=_b64(rec.get("key")),
                value=_b64(rec.get("value")),
                raw_value=str(rec.get("value", "")),
                headers=headers,
            )


def build_event(
    records: list[dict[str, Any]],
    *,
    event_source: str = "SelfManagedKafka",
    bootstrap_servers: str = "127.0.0.1:9092",
) -> dict[str, Any]:
    """The event the Lambda event-source mapping would send for these records.

    Each record: ``topic, partition, offset, timestamp, key (bytes|None), value (bytes), headers``.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(
            {
                "topic": r["topic"],
                "partition": r["partition"],
                "offset": r["offset"],
                "timestamp": r.get("timestamp", 0),
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(r["key"]).decode() if r.get("key") is not None else None,
                "value": base64.b64encode(r["value"]).decode(),
                "headers": [{k: list(v)} for k, v in (r.get("headers") or {}).items()],
            }
        )
    event: dict[str, Any] = {
        "eventSource": event_source,
        "bootstrapServers": bootstrap_servers,
        "records": grouped,
    }
    if event_source == "aws:kafka":
        event["eventSourceArn"] = (
            "arn:aws:kafka:us-east-1:123456789012:cluster/fraud/abcd1234-0123-4567-89ab-cdef01234567-1"
        )
        event.pop("bootstrapServers")
    return event


def decode_json(record: KafkaRecord) -> Any:
    """The record's JSON value; raises ValueError with a reason fit for the dead-letter topic.

    orjson: ~7x faster than the standard library on these records (the stream path's top cost),
    strict about UTF-8, and it refuses NaN/Infinity, which JSON does not have.
    """
    if record.value is None:
        raise ValueError("value is not valid base64")
    try:
        return orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"value is not valid UTF-8 JSON: {exc}") from exc
