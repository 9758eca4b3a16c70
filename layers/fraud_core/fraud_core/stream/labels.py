"""Labels arriving on a topic the stream function consumes: trusted only for transactions this
system scored, then recorded (ledger, label log) and applied to the shape's online state."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from fraud_core.errors import FieldError
from fraud_core.event_log import Logs, label_rows
from fraud_core.labels import Label, trust
from fraud_core.online.labels import LabelLedger
from fraud_core.shapes.base import DataShape
from fraud_core.stream.batch import Poison
from fraud_core.stream.events import KafkaRecord
from fraud_core.stream.ports import StreamState


def trusted_labels(
    labels: list[tuple[KafkaRecord, Label]],
    *,
    state: StreamState,
    shape: DataShape,
    scored_here: Mapping[str, dict[str, Any]],
    poison: Poison,
) -> list[tuple[KafkaRecord, Label]]:
    """The labels of transactions this system scored (stored, or earlier in this batch), with
    the scored transaction's terminal and time; the others are dead-lettered with the reason."""
    stored = state.stored_results([lb.transaction_id for _, lb in labels])
    accepted = []
    for (rec, label), raw in zip(labels, stored, strict=True):
        known = orjson.loads(raw) if raw else scored_here.get(label.transaction_id)
        trusted = trust(label, known)
        problem = trusted if isinstance(trusted, FieldError) else shape.label_error(trusted)
        if problem is not None or isinstance(trusted, FieldError):
            poison.append((rec, f"invalid label: {problem}"))
            continue
        accepted.append((rec, trusted))
    return accepted


def record_labels(
    accepted: list[tuple[KafkaRecord, Label]],
    *,
    ledger: LabelLedger,
    logs: Logs | None,
    shape: DataShape,
    online: Any,
) -> int:
    """Ledger and label log per source topic (the sender), then the shape's online state; the
    number of labels recorded."""
    for topic in sorted({rec.topic for rec, _ in accepted}):
        mine = [lb for rec, lb in accepted if rec.topic == topic]
        ledger.record(mine, author=f"stream:{topic}")
        if logs is not None:
            first = next(rec for rec, _ in accepted if rec.topic == topic)
            now = time.time()
            logs.labels.append(
                label_rows(mine, author=f"stream:{topic}", received_at=now),
                name=f"{first.record_id}-{len(mine)}",
                when=now,
            )
    shape.apply_labels([lb for _, lb in accepted], online=online)
    return len(accepted)
