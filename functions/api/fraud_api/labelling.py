"""The one path a label takes, whether it comes from `POST /v1/labels` or the analyst console:
checked against the stored result, recorded with its author, logged, applied to online state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fraud_core.errors import FieldError
from fraud_core.event_log import Logs, label_rows
from fraud_core.labels import Label, trust
from fraud_core.online.labels import LabelLedger
from fraud_core.online.results import ResultStore
from fraud_core.scorer import Scorer


@dataclass(frozen=True, slots=True)
class LabelOutcome:
    accepted: int
    applied_online: int
    errors: list[dict[str, Any]]
    """One entry per refused label (``loc`` points at ``body.labels[i].field``); nothing is
    recorded when any label is refused."""


def accept_labels(
    labels: Sequence[Label],
    *,
    author: str,
    scorer: Scorer,
    online: Any,
    store: ResultStore,
    ledger: LabelLedger,
    logs: Logs | None,
) -> LabelOutcome:
    """Record ``labels`` (all or none). Raises StoreUnavailableError when a store is unreachable."""
    stored = store.get_results([lb.transaction_id for lb in labels])
    trusted = [trust(label, known) for label, known in zip(labels, stored, strict=True)]
    errors = [
        {"loc": ["body", "labels", i, problem.field], "msg": problem.message, "type": "untrusted_label"}
        for i, t in enumerate(trusted)
        if (problem := t if isinstance(t, FieldError) else scorer.shape.label_error(t)) is not None
    ]
    if errors:
        return LabelOutcome(0, 0, errors)
    accepted = [t for t in trusted if isinstance(t, Label)]
    ledger.record(accepted, author=author)
    if logs is not None:
        now = time.time()
        rows = label_rows(accepted, author=author, received_at=now)
        logs.labels.append(rows, name=f"http-{uuid.uuid4().hex}", when=now)
    applied = scorer.shape.apply_labels(accepted, online=online)
    return LabelOutcome(len(accepted), applied, [])
