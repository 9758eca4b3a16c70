"""`POST /v1/labels`: confirmed labels fed back to the current model's data shape (idempotent)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from fraud_api.deps import OnlineStateDep, ScorerDep
from fraud_core.constraints import EpochSeconds, Identifier
from fraud_core.errors import InvalidTransactionError, StoreUnavailableError
from fraud_core.labels import Label

router = APIRouter(prefix="/v1", tags=["labels"])


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transaction_id: Identifier
    tx_datetime: EpochSeconds = Field(description="Epoch seconds of the transaction.")
    terminal_id: Identifier | None = Field(
        default=None, description="Required by data shapes whose features use labels (terminal risk)."
    )
    is_fraud: Annotated[bool, Field(strict=True)]


class LabelsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "labels": [
                        {
                            "transaction_id": "812",
                            "tx_datetime": 1522541234,
                            "terminal_id": "3107",
                            "is_fraud": True,
                        }
                    ]
                }
            ]
        },
    )
    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class LabelsAccepted(BaseModel):
    accepted: int
    applied_online: int = Field(
        description="Fraud labels that changed the current model's online features (0 for a shape without them)."
    )


@router.post(
    "/labels",
    response_model=LabelsAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Feed back confirmed labels (idempotent); they count in terminal risk after the label delay",
)
def post_labels(body: LabelsRequest, scorer: ScorerDep, online: OnlineStateDep) -> LabelsAccepted:
    labels = [Label(lb.transaction_id, lb.tx_datetime, lb.is_fraud, lb.terminal_id) for lb in body.labels]
    problems = [(i, scorer.shape.label_error(lb)) for i, lb in enumerate(labels)]
    errors = [(i, p) for i, p in problems if p is not None]
    if errors:
        raise InvalidTransactionError([p for _, p in errors], index=errors[0][0])
    try:
        applied = scorer.shape.apply_labels(labels, online=online)
    except StoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    return LabelsAccepted(accepted=len(labels), applied_online=applied)
