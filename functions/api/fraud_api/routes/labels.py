"""`POST /v1/labels`: confirmed labels of scored transactions, recorded with their sender and fed
back to the current model's data shape (idempotent; its own permission and rate limit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fraud_api.deps import (
    LabelLedgerDep,
    LabelLimiterDep,
    LabelsPrincipalDep,
    LogsDep,
    OnlineStateDep,
    ResultStoreDep,
    ScorerDep,
    require_api_key,
)
from fraud_api.labelling import accept_labels
from fraud_core.constraints import EpochSeconds, Identifier
from fraud_core.errors import StoreUnavailableError
from fraud_core.labels import Label

router = APIRouter(prefix="/v1", tags=["labels"])


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transaction_id: Identifier = Field(description="A transaction this system scored.")
    is_fraud: Annotated[bool, Field(strict=True)]
    tx_datetime: EpochSeconds | None = Field(
        default=None, description="Optional check: must equal the scored transaction's time."
    )
    terminal_id: Identifier | None = Field(
        default=None, description="Optional check: must equal the scored transaction's terminal."
    )


class LabelsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"labels": [{"transaction_id": "812", "is_fraud": True}]}]},
    )
    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class LabelsAccepted(BaseModel):
    accepted: int
    applied_online: int = Field(
        description="Labels that changed the current model's online features (a fraud label joining a "
        "terminal's fraud set, a correction leaving it); 0 for a shape without label features."
    )
    author: str = Field(description="Who the ledger records as the sender.")


@router.post(
    "/labels",
    response_model=LabelsAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Feed back confirmed labels of scored transactions (idempotent; a later label corrects an earlier one)",
    responses={
        401: {"description": "Auth is on and the labels key is missing or wrong"},
        403: {"description": "Auth is on and no labels key is configured"},
        422: {"description": "A label names a transaction this system did not score, or contradicts it"},
        429: {"description": "Too many labels from this client in the last minute"},
    },
)
def post_labels(
    body: LabelsRequest,
    scorer: ScorerDep,
    online: OnlineStateDep,
    store: ResultStoreDep,
    ledger: LabelLedgerDep,
    limiter: LabelLimiterDep,
    author: LabelsPrincipalDep,
    logs: LogsDep,
) -> JSONResponse | LabelsAccepted:
    wait = limiter.take(author, len(body.labels))
    if wait:
        return JSONResponse(
            {"detail": f"too many labels from this client: retry in {wait:.0f} s"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    labels = [Label(lb.transaction_id, lb.tx_datetime, lb.is_fraud, lb.terminal_id) for lb in body.labels]
    try:
        outcome = accept_labels(
            labels, author=author, scorer=scorer, online=online, store=store, ledger=ledger, logs=logs
        )
    except StoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"label store unavailable: {exc}"
        ) from exc
    if outcome.errors:
        return JSONResponse({"detail": outcome.errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return LabelsAccepted(accepted=outcome.accepted, applied_online=outcome.applied_online, author=author)


class LatestLabel(BaseModel):
    transaction_id: str
    is_fraud: bool | None = Field(description="The newest label; null when unlabelled (or expired).")
    author: str | None = None
    at: float | None = Field(default=None, description="When it was recorded (epoch seconds).")


@router.get(
    "/labels",
    response_model=list[LatestLabel],
    dependencies=[Depends(require_api_key)],
    summary="The newest label of each transaction, with its author and time (API key, not the labels key)",
    responses={503: {"description": "Label store unreachable"}},
)
def get_labels(
    ledger: LabelLedgerDep,
    transaction_id: Annotated[list[Identifier], Query(min_length=1, max_length=100)],
) -> list[LatestLabel]:
    try:
        found = ledger.latest(transaction_id)
    except StoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"label store unavailable: {exc}"
        ) from exc
    return [
        LatestLabel(transaction_id=t, **(f or {"is_fraud": None}))
        for t, f in zip(transaction_id, found, strict=True)
    ]
