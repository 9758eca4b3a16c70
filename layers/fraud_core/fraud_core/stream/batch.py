"""The pieces of a batch: decoding records, dead letters, id conflicts, merging reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from fraud_core.event_log import scoring_row
from fraud_core.scorer import ScoreResult
from fraud_core.shapes import FeatureMatrix
from fraud_core.stream.events import KafkaRecord
from fraud_core.stream.ports import BatchReport, Claim

MAX_RECORD_BYTES = 64 * 1024

Decoded = list[tuple[KafkaRecord, dict[str, Any]]]
Poison = list[tuple[KafkaRecord, str]]


class Scored(NamedTuple):
    """One scored transaction: its record, its result body (encoded once), its claim, and what
    its scoring-log row is made of."""

    record: KafkaRecord
    body: dict[str, Any]
    encoded: str
    claim: Claim
    result: ScoreResult
    event_time: float
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """A batch's scored transactions, in order, with the feature rows they were scored on."""

    rows: list[Scored]
    features: FeatureMatrix
    """One row per transaction: the data shape's features (all of them, in its order)."""
    scored_at: float
    logged: list[orjson.Fragment]
    """Each row's features as the scoring log keeps them (`fraud_core.event_log.logged_features`)."""
    claimed: Future[list[str]] | None = None
    """The claim of its transactions (`StreamState.claim`), started before the model ran."""

    def log_rows(self, shape: str) -> list[dict[str, Any]]:
        """The scoring-log row of each transaction (`fraud_core.event_log.scoring_row`)."""
        return [
            scoring_row(
                s.result,
                event_time=s.event_time,
                scored_at=self.scored_at,
                shape=shape,
                features=f,
                extra=s.extra,
            )
            for s, f in zip(self.rows, self.logged, strict=True)
        ]

    def feature_dict(self, index: int, names: Sequence[str]) -> dict[str, float]:
        """One transaction's features by name (what an alert's case view shows)."""
        return dict(zip(names, self.features[index].tolist(), strict=True))


NOTHING_SCORED = ScoredBatch([], np.empty((0, 0), dtype=np.float32), 0.0, [])


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
