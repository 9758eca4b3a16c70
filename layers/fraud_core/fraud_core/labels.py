"""A confirmed label of a transaction, as it comes back from investigators (any data shape)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraud_core.constraints import diagnose_ids, epoch_seconds
from fraud_core.errors import FieldError, InvalidTransactionError

LABEL_TYPE = "label"
"""``{"type": "label", ...}`` marks a label record on a topic the stream function consumes."""


@dataclass(frozen=True, slots=True)
class Label:
    transaction_id: str
    epoch: int
    """Event time of the labelled transaction."""
    is_fraud: bool
    terminal_id: str | None = None


def parse_label(payload: Mapping[str, Any]) -> Label:
    """``{transaction_id, tx_datetime, is_fraud[, terminal_id]}``; raises InvalidTransactionError."""
    errors = diagnose_ids(payload, ("transaction_id", "terminal_id"), required=("transaction_id",))
    epoch = epoch_seconds(payload.get("tx_datetime"))
    if isinstance(epoch, str):
        errors.append(FieldError("tx_datetime", epoch))
    fraud = payload.get("is_fraud")
    if type(fraud) not in (int, bool) or fraud not in (0, 1):
        errors.append(FieldError("is_fraud", f"expected 0 or 1, got {fraud!r:.50}"))
    if errors:
        raise InvalidTransactionError(errors)
    assert isinstance(epoch, int)
    return Label(payload["transaction_id"], epoch, bool(fraud), payload.get("terminal_id"))
