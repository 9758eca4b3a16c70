"""`POST /v1/labels`: confirmed labels of scored transactions, recorded with their sender and fed
back to the current model's data shape (idempotent; its own permission and rate limit)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
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
)
from fraud_core.constraints import EpochSeconds, Identifier
from fraud_core.errors import FieldError, StoreUnavailableError
from fraud_core.event_log import label_rows
from fraud_core.labels import Label, trust

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
        stored = store.get_results([lb.transaction_id for lb in labels])
        trusted = [trust(label, known) for label, known in zip(labels, stored, strict=True)]
        errors = [
            {"loc": ["body", "labels", i, problem.field], "msg": problem.message, "type": "untrusted_label"}
            for i, t in enumerate(trusted)
            if (problem := t if isinstance(t, FieldError) else scorer.shape.label_error(t)) is not None
        ]
        if errors:
            return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
        accepted = [t for t in trusted if isinstance(t, Label)]
        ledger.record(accepted, author=author)
        if logs is not None:
            now = time.time()
            rows = label_rows(accepted, author=author, received_at=now)
            logs.labels.append(rows, name=f"http-{uuid.uuid4().hex}", when=now)
        applied = scorer.shape.apply_labels(accepted, online=online)
    except StoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"label store unavailable: {exc}"
        ) from exc
    return LabelsAccepted(accepted=len(accepted), applied_online=applied, author=author)
