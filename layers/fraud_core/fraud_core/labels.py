"""Confirmed labels of transactions, as they come back from investigators (any data shape).

A label steers decisions (a simulated-shape model reads terminal risk from labels), so it is
only *trusted* for a transaction this system scored: its stored result must exist, and what the
label says about the transaction (terminal, time) must agree with what was scored; the stored
values are the ones applied. Every accepted label goes to a ledger with who sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fraud_core.constraints import diagnose_ids, epoch_seconds
from fraud_core.errors import FieldError, InvalidTransactionError

LABEL_TYPE = "label"
"""``{"type": "label", ...}`` marks a label record on a topic the stream function consumes."""


@dataclass(frozen=True, slots=True)
class Label:
    transaction_id: str
    epoch: int | None
    """Event time of the labelled transaction (taken from its stored result when trusted)."""
    is_fraud: bool
    terminal_id: str | None = None


def parse_label(payload: Mapping[str, Any]) -> Label:
    """``{transaction_id, is_fraud[, tx_datetime, terminal_id]}``; raises InvalidTransactionError."""
    errors = diagnose_ids(payload, ("transaction_id", "terminal_id"), required=("transaction_id",))
    epoch: int | str | None = None
    if payload.get("tx_datetime") is not None:
        epoch = epoch_seconds(payload["tx_datetime"])
        if isinstance(epoch, str):
            errors.append(FieldError("tx_datetime", epoch))
    fraud = payload.get("is_fraud")
    if type(fraud) not in (int, bool) or fraud not in (0, 1):
        errors.append(FieldError("is_fraud", f"expected 0 or 1, got {fraud!r:.50}"))
    if errors:
        raise InvalidTransactionError(errors)
    assert epoch is None or isinstance(epoch, int)
    return Label(payload["transaction_id"], epoch, bool(fraud), payload.get("terminal_id"))


def trust(label: Label, stored: Mapping[str, Any] | None) -> Label | FieldError:
    """The label as it will be applied, or why it is refused.

    ``stored`` is the transaction's stored result (as published), None when the system never
    scored it or its result expired (``FRAUD_RESULT_TTL_SECONDS`` bounds how late a label may come).
    """
    if stored is None:
        return FieldError(
            "transaction_id",
            f"{label.transaction_id!r} is not a transaction this system scored (or its stored result "
            "expired): labels apply only to scored transactions",
        )
    terminal, epoch = stored.get("terminal_id"), stored.get("tx_datetime")
    if label.terminal_id is not None and terminal is not None and label.terminal_id != terminal:
        return FieldError("terminal_id", f"{label.terminal_id!r} is not the scored transaction's terminal")
    if label.epoch is not None and epoch is not None and label.epoch != epoch:
        return FieldError("tx_datetime", "is not the scored transaction's time")
    return replace(
        label,
        epoch=epoch if epoch is not None else label.epoch,
        terminal_id=terminal if terminal is not None else label.terminal_id,
    )
