"""The pieces of a batch: decoding records, dead letters, id conflicts, merging reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from fraud_core.stream.events import KafkaRecord
from fraud_core.stream.ports import BatchReport, CommitItem

MAX_RECORD_BYTES = 64 * 1024

Decoded = list[tuple[KafkaRecord, dict[str, Any]]]
Poison = list[tuple[KafkaRecord, str]]


@dataclass(slots=True)
class Scored:
    """One transaction ready to commit: its record, its result body (encoded once), its commit item."""

    record: KafkaRecord
    body: dict[str, Any]
    encoded: str
    item: CommitItem
    log_row: dict[str, Any]
    """What the scoring log keeps of it (`fraud_core.event_log`)."""


def conflict_reason(transaction_id: str) -> str:
    return f"id_conflict: transaction_id {transaction_id!r} was already used with another payload"


def dead_letter(record: KafkaRecord, reason: str) -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "value_base64": record.raw_value[: 2 * MAX_RECORD_BYTES],
        }
    ).encode()


def merge(a: BatchReport, b: BatchReport) -> BatchReport:
    """One report for two halves of a batch."""
    return BatchReport(
        received=a.received + b.received,
        scored=a.scored + b.scored,
        duplicates=a.duplicates + b.duplicates,
        dead_lettered=a.dead_lettered + b.dead_lettered,
        conflicts=a.conflicts + b.conflicts,
        alerts=a.alerts + b.alerts,
        labels=a.labels + b.labels,
        failures=a.failures + b.failures,
        results=a.results + b.results,
        error=a.error or b.error,
    )


def decode(records: list[KafkaRecord]) -> tuple[Decoded, Poison]:
    """JSON objects of the records (orjson: strict UTF-8, no NaN); the rest is poison."""
    decoded: Decoded = []
    poison: Poison = []
    for rec in records:
        if rec.value is None:
            poison.append((rec, "value is not valid base64"))
            continue
        if len(rec.value) > MAX_RECORD_BYTES:
            poison.append((rec, f"value is {len(rec.value)} bytes, over {MAX_RECORD_BYTES}"))
            continue
        try:
            payload = orjson.loads(rec.value)
        except orjson.JSONDecodeError as exc:
            poison.append((rec, f"value is not valid UTF-8 JSON: {exc}"))
            continue
        if not isinstance(payload, dict):
            poison.append((rec, f"value is JSON {type(payload).__name__}, expected an object"))
            continue
        decoded.append((rec, payload))
    return decoded, poison
