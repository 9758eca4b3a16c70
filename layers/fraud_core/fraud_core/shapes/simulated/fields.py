"""The simulated schema's fields, their constraint table, the HTTP request model and the parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fraud_core.constraints import Bounds, EpochSeconds, Identifier, Moment, diagnose_ids, epoch_seconds
from fraud_core.errors import FieldError, InvalidTransactionError

ID_FIELDS = ("transaction_id", "customer_id", "terminal_id")
AMOUNT = Bounds(0, 10_000_000)
"""THE constraint table of this shape (ids and times follow `fraud_core.constraints`)."""


@dataclass(frozen=True, slots=True)
class CardEvent:
    """A validated simulated-schema transaction."""

    transaction_id: str
    epoch: int
    card: str
    terminal: str
    amount: float


class EntityScoreRequest(BaseModel):
    """A card transaction for a simulated-schema model: its card and terminal features are read
    from the online store (the same windows the stream function maintains)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "812",
                    "tx_datetime": "2018-08-02T10:15:00Z",
                    "customer_id": "4127",
                    "terminal_id": "3107",
                    "amount": 57.16,
                }
            ]
        },
    )
    transaction_id: Identifier | None = Field(default=None, description="Generated when absent.")
    tx_datetime: Moment | EpochSeconds = Field(description="ISO-8601 time or epoch seconds.")
    customer_id: Identifier
    terminal_id: Identifier
    amount: AMOUNT.annotation()  # type: ignore[valid-type]


def parse_event(payload: Any, *, default_id: str | None = None) -> CardEvent:
    """``{transaction_id, tx_datetime, customer_id, terminal_id, amount}``; raises InvalidTransactionError.
    ``default_id`` stands for a missing ``transaction_id`` (the stream's auto id)."""
    if not isinstance(payload, Mapping):
        raise InvalidTransactionError(
            [FieldError("<record>", f"expected a JSON object, got {type(payload).__name__}")]
        )
    required = ID_FIELDS if default_id is None else ID_FIELDS[1:]
    errors = diagnose_ids(payload, ID_FIELDS, required=required)
    for name in ("tx_datetime", "amount"):
        if payload.get(name) is None:
            errors.append(FieldError(name, "field required"))
    epoch = epoch_seconds(payload.get("tx_datetime"))
    if isinstance(epoch, str) and payload.get("tx_datetime") is not None:
        errors.append(FieldError("tx_datetime", epoch))
    problem = AMOUNT.error(payload.get("amount"))
    if problem and payload.get("amount") is not None:
        errors.append(FieldError("amount", problem))
    if errors:
        raise InvalidTransactionError(errors)
    assert isinstance(epoch, int)
    return CardEvent(
        payload.get("transaction_id") or str(default_id),
        epoch,
        payload["customer_id"],
        payload["terminal_id"],
        float(payload["amount"]),
    )
