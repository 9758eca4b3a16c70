"""`POST /v1/score` and `POST /v1/score/batch`: transactions of the current model's data shape
→ score, decision, reasons, online features, the card's counters."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from fraud_api.deps import ObserverDep, OnlineStateDep, ResultStoreDep, ScorerDep, SettingsDep
from fraud_api.observer import Observer
from fraud_api.schemas import BatchScoreRequest, BatchScoreResponse, ScoreBody, ScoreResponse
from fraud_core.errors import StoreUnavailableError
from fraud_core.online.results import CardCounters, ResultStore
from fraud_core.scorer import ExplainMode, Scorer

router = APIRouter(prefix="/v1", tags=["scoring"])


def _unprocessable(loc: list[str | int], msg: str, kind: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{"loc": loc, "msg": msg, "type": kind}]
    )


def _records(bodies: list[BaseModel], scorer: Scorer) -> list[dict[str, Any]]:
    """JSON-like records of the bodies, refused unless they are the current model's data shape."""
    wanted = scorer.shape.request_model
    records = []
    for i, body in enumerate(bodies):
        if not isinstance(body, wanted):
            raise _unprocessable(
                ["body", i] if len(bodies) > 1 else ["body"],
                f"the current model ({scorer.shape.name} schema) scores {wanted.__name__} transactions: "
                f"{', '.join(wanted.model_fields)}",
                "schema_mismatch",
            )
        record = body.model_dump(mode="json", exclude_none=True)
        record.setdefault("transaction_id", f"tx_{uuid.uuid4().hex}")
        records.append(record)
    return records


def _score(
    bodies: list[BaseModel],
    *,
    scorer: Scorer,
    online: Any,
    store: ResultStore,
    observer: Observer,
    explain: ExplainMode,
) -> tuple[list[ScoreResponse], list[str]]:
    records = _records(bodies, scorer)
    try:
        prepared = scorer.prepare(records, online=online)
    except StoreUnavailableError as exc:
        # The score needs the online windows: without them there is no honest score.
        observer.degraded(str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"online features unavailable: {exc}"
        ) from exc
    if prepared.errors:
        raise prepared.errors[min(prepared.errors)]
    results = scorer.score_prepared(prepared, explain=explain)
    observer.decisions(r.decision for r in results)
    counters, warnings = _card_counters([c for c in prepared.card_ids if c], store, observer)
    names = scorer.feature_names
    responses = [
        ScoreResponse(
            **r.to_dict(),
            online_features=dict(zip(names, row.tolist(), strict=True))
            if scorer.shape.shows_features
            else None,
            card_counters=counters.get(r.card_id) if r.card_id else None,
            warnings=warnings,
        )
        for r, row in zip(results, prepared.features, strict=True)
    ]
    return responses, warnings


def _card_counters(
    card_ids: list[str], store: ResultStore, observer: Observer
) -> tuple[dict[str, CardCounters], list[str]]:
    """The cards' counters in one round trip; an unreachable store costs the counters, not the score."""
    if not card_ids:
        return {}, []
    try:
        return store.card_counters(sorted(set(card_ids))), []
    except StoreUnavailableError as exc:
        observer.degraded(str(exc))
        return {}, [f"card counters unavailable: {exc}"]


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score one transaction of the current model's data shape (Kaggle fields, or card/terminal fields)",
    responses={503: {"description": "Model unavailable, or the online features of a windowed shape"}},
)
def score(
    body: ScoreBody,
    scorer: ScorerDep,
    online: OnlineStateDep,
    store: ResultStoreDep,
    observer: ObserverDep,
) -> ScoreResponse:
    responses, _ = _score([body], scorer=scorer, online=online, store=store, observer=observer, explain="all")
    return responses[0]


@router.post(
    "/score/batch",
    response_model=BatchScoreResponse,
    summary="Score up to FRAUD_API_MAX_BATCH transactions in one vectorized call",
)
def score_batch(
    body: BatchScoreRequest,
    scorer: ScorerDep,
    online: OnlineStateDep,
    store: ResultStoreDep,
    observer: ObserverDep,
    settings: SettingsDep,
) -> BatchScoreResponse:
    if len(body.transactions) > settings.api_max_batch:
        raise _unprocessable(
            ["body", "transactions"],
            f"at most {settings.api_max_batch} transactions per batch, got {len(body.transactions)}",
            "too_long",
        )
    responses, warnings = _score(
        body.transactions,
        scorer=scorer,
        online=online,
        store=store,
        observer=observer,
        explain=settings.batch_explain,
    )
    for r in responses:
        r.warnings = []  # said once for the batch
    return BatchScoreResponse(results=responses, model_version=scorer.version, warnings=warnings)
