"""`POST /v1/score` and `POST /v1/score/batch`: raw transactions, decisions, reasons, online features."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, status

from fraud_api.deps import EntityStateDep, ObserverDep, ScorerDep, SettingsDep, StoreDep
from fraud_api.observer import Observer
from fraud_api.schemas import (
    BatchScoreRequest,
    BatchScoreResponse,
    EntityScoreRequest,
    ScoreRequest,
    ScoreResponse,
)
from fraud_core.entity_online import EntityEvent, EntityState
from fraud_core.scorer import ExplainMode, Scorer
from fraud_core.stores import FeatureStore, StoreUnavailableError

router = APIRouter(prefix="/v1", tags=["scoring"])


def _record(tx: ScoreRequest) -> dict[str, Any]:
    record: dict[str, Any] = tx.model_dump(exclude={"timestamp"})
    if tx.timestamp is not None:
        record["Time"] = tx.timestamp.timestamp()
    record["transaction_id"] = tx.transaction_id or f"tx_{uuid.uuid4().hex}"
    return record


def _score(
    transactions: list[ScoreRequest],
    *,
    scorer: Scorer,
    store: FeatureStore,
    observer: Observer,
    explain: ExplainMode,
) -> tuple[list[ScoreResponse], bool]:
    records = [_record(tx) for tx in transactions]
    card_ids = sorted({tx.card_id for tx in transactions if tx.card_id})
    features: dict[str, dict[str, float]] = {}
    degraded = False
    if card_ids:
        try:
            features = store.read_card_features(card_ids)
        except StoreUnavailableError as exc:
            degraded = True
            observer.degraded(str(exc))
    results = scorer.score_batch(records, explain=explain)
    observer.decisions(r.decision for r in results)
    responses = [
        ScoreResponse(
            **{**r.to_dict(), "transaction_id": r.transaction_id or rec["transaction_id"]},
            online_features=(features.get(r.card_id, {}) if r.card_id and not degraded else None),
            degraded=degraded,
        )
        for r, rec in zip(results, records, strict=True)
    ]
    return responses, degraded


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score one transaction: Kaggle raw fields, or card/terminal fields for a simulated-schema model",
    responses={503: {"description": "Model or (for simulated models) online store unavailable"}},
)
def score(
    body: ScoreRequest | EntityScoreRequest,
    scorer: ScorerDep,
    store: StoreDep,
    entities: EntityStateDep,
    observer: ObserverDep,
) -> ScoreResponse:
    schema = scorer.manifest.schema_name
    if isinstance(body, EntityScoreRequest) != (schema == "simulated"):
        wanted = (
            "card/terminal fields (customer_id, terminal_id, amount, tx_datetime)"
            if schema == "simulated"
            else "Kaggle fields (Time, Amount, V1..V28)"
        )
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body"],
                    "msg": f"the current model ({schema} schema) scores {wanted}",
                    "type": "schema_mismatch",
                }
            ],
        )
    if isinstance(body, EntityScoreRequest):
        return _score_entity(body, scorer=scorer, entities=entities, observer=observer)
    responses, _ = _score([body], scorer=scorer, store=store, observer=observer, explain="all")
    return responses[0]


def _score_entity(
    body: EntityScoreRequest, *, scorer: Scorer, entities: EntityState, observer: Observer
) -> ScoreResponse:
    """Features from the online windows as if this transaction were observed now (read-only)."""
    epoch = int(body.tx_datetime.timestamp()) if isinstance(body.tx_datetime, datetime) else body.tx_datetime
    event = EntityEvent(
        body.transaction_id or f"tx_{uuid.uuid4().hex}",
        epoch,
        body.customer_id,
        body.terminal_id,
        body.amount,
    )
    try:
        (vector,) = entities.peek([event])
    except StoreUnavailableError as exc:
        observer.degraded(str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"online features unavailable: {exc}"
        ) from exc
    (result,) = scorer.score_features(
        np.asarray([vector], dtype=np.float32),
        transaction_ids=[event.transaction_id],
        card_ids=[event.card],
        explain="all",
    )
    observer.decisions([result.decision])
    return ScoreResponse(
        **result.to_dict(), online_features=dict(zip(scorer.feature_names, vector, strict=True))
    )


@router.post(
    "/score/batch",
    response_model=BatchScoreResponse,
    summary="Score up to FRAUD_API_MAX_BATCH raw transactions in one vectorized call",
)
def score_batch(
    body: BatchScoreRequest,
    scorer: ScorerDep,
    store: StoreDep,
    observer: ObserverDep,
    settings: SettingsDep,
) -> BatchScoreResponse:
    if len(body.transactions) > settings.api_max_batch:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "transactions"],
                    "msg": f"at most {settings.api_max_batch} transactions per batch, got {len(body.transactions)}",
                    "type": "too_long",
                }
            ],
        )
    responses, degraded = _score(
        body.transactions, scorer=scorer, store=store, observer=observer, explain=settings.batch_explain
    )
    return BatchScoreResponse(results=responses, model_version=scorer.version, degraded=degraded)
