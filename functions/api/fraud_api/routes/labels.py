"""`POST /v1/labels`: fraud labels fed back into the online terminal windows (simulated schema)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from fraud_api.deps import EntityStateDep
from fraud_core.entity_online import parse_label
from fraud_core.stores import StoreUnavailableError

router = APIRouter(prefix="/v1", tags=["labels"])

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/+=-]+$")]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transaction_id: Identifier
    tx_datetime: Annotated[int, Field(ge=0, le=10**11, strict=True)] = Field(
        description="Epoch seconds of the transaction."
    )
    terminal_id: Identifier
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


@router.post(
    "/labels",
    response_model=LabelsAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Feed back confirmed labels (idempotent); they count in terminal risk after the label delay",
)
def post_labels(body: LabelsRequest, entities: EntityStateDep) -> LabelsAccepted:
    labels = [parse_label({**label.model_dump(), "type": "label"}) for label in body.labels]
    try:
        entities.add_labels(labels)
    except StoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    return LabelsAccepted(accepted=len(labels))
