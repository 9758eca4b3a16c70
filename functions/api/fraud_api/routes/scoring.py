"""`POST /v1/score` and `POST /v1/score/batch`: transactions of the current model's data shape
→ score, decision, reasons, online features, the card's counters."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from fraud_api.deps import (
    ActivityDep,
    LogsDep,
    ObserverDep,
    OnlineStateDep,
    ResultStoreDep,
    ScorerDep,
    SettingsDep,
)
from fraud_api.observer import Observer
from fraud_api.schemas import BatchScoreResponse, ScoreResponse
from fraud_core.errors import StoreUnavailableError
from fraud_core.event_log import Logs, logged_features, scoring_row
from fraud_core.online.activity import ActivityLog, ScoredEvent, record_quietly
from fraud_core.online.results import CardCounters, ResultStore
from fraud_core.scorer import ExplainMode, Scorer, ScoreResult
from fraud_core.shapes import SHAPES, Prepared

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["scoring"])


def _unprocessable(loc: list[str | int], msg: str, kind: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{"loc": loc, "msg": msg, "type": kind}]
    )


JsonObject = Annotated[dict[str, Any], Body()]
"""A request body validated by hand against the current model's data shape only: a union of every
shape's model would answer one bad field with dozens of errors about the other shapes' fields.
The OpenAPI document still describes every shape (`fraud_api.main`)."""


def _records(bodies: list[Any], scorer: Scorer, *, at: list[tuple[str | int, ...]]) -> list[dict[str, Any]]:
    """JSON-like records of the bodies (body ``i`` located at ``at[i]``), validated by the current
    model's data shape."""
    model = scorer.shape.request_model
    records = []
    errors: list[Any] = []
    for body, where in zip(bodies, at, strict=True):
        try:
            validated = model.model_validate(body)
        except ValidationError as exc:
            other = _other_shape_of(body, scorer)
            if other is not None:
                msg = (
                    f"this is a {other} transaction, but the current model ({scorer.shape.name} schema) "
                    f"scores: {', '.join(model.model_fields)}"
                )
                errors.append({"loc": where, "msg": msg, "type": "schema_mismatch"})
            else:
                errors += [{**e, "loc": (*where, *e["loc"])} for e in exc.errors()]
            continue
        record = validated.model_dump(mode="json", exclude_none=True)
        record.setdefault("transaction_id", f"tx_{uuid.uuid4().hex}")
        records.append(record)
    if errors:
        raise RequestValidationError(errors)
    return records


def _other_shape_of(body: Any, scorer: Scorer) -> str | None:
    """The data shape a refused body does belong to, if any (a clearer answer than its field errors)."""
    for shape in SHAPES.values():
        if shape is not scorer.shape:
            try:
                shape.request_model.model_validate(body)
            except ValidationError:
                continue
            return shape.name
    return None


def _score(
    records: list[dict[str, Any]],
    *,
    scorer: Scorer,
    online: Any,
    store: ResultStore,
    observer: Observer,
    explain: ExplainMode,
    logs: Logs | None,
    activity: ActivityLog | None = None,
) -> tuple[list[ScoreResponse], list[str]]:
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
    _log(logs, scorer, prepared, results)
    record_quietly(activity, _events(scorer, prepared, results), logger=logger)
    observer.decisions(r.decision for r in results)
    counters, warnings = _card_counters([c for c in prepared.card_ids if c], store, observer)
    names = scorer.shape.feature_names  # the rows hold every feature the shape builds
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


def _log(logs: Logs | None, scorer: Scorer, prepared: Prepared, results: list[ScoreResult]) -> None:
    """Append the request's scores to the scoring log; a write that fails fails the request (503):
    nothing scored goes unlogged."""
    if logs is None:
        return
    now = time.time()
    rows = [
        scoring_row(
            result,
            event_time=event_time,
            scored_at=now,
            shape=scorer.shape.name,
            features=features,
            extra=extra,
        )
        for result, event_time, features, extra in zip(
            results,
            prepared.event_times,
            logged_features(prepared.features, scorer.shape.feature_names),
            prepared.extras or [{}] * len(results),
            strict=True,
        )
    ]
    try:
        logs.scoring.append(rows, name=f"http-{uuid.uuid4().hex}", when=now)
    except StoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"scoring log unavailable: {exc}"
        ) from exc


def _events(scorer: Scorer, prepared: Prepared, results: list[ScoreResult]) -> list[ScoredEvent]:
    """The console's view of the request: every score counts in the live panel; alerts keep their
    features (the vector scored) and reasons for the case view."""
    now = time.time()
    names = scorer.shape.feature_names
    return [
        ScoredEvent(
            transaction_id=str(r.transaction_id),
            card_id=r.card_id,
            fraud_score=r.fraud_score,
            decision=r.decision,
            model_version=r.model_version,
            scored_at=now,
            event_time=prepared.event_times[i] if prepared.event_times else None,
            amount=prepared.amounts[i] if prepared.amounts else None,
            reasons=[x.to_dict() for x in r.reasons] if r.decision != "approve" else [],
            features=dict(zip(names, prepared.features[i].tolist(), strict=True))
            if r.decision != "approve"
            else None,
            challenger={"model_version": r.shadow_version, "fraud_score": r.shadow_score}
            if r.shadow_version
            else None,
            source="http",
        )
        for i, r in enumerate(results)
    ]


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
    body: JsonObject,
    scorer: ScorerDep,
    online: OnlineStateDep,
    store: ResultStoreDep,
    observer: ObserverDep,
    logs: LogsDep,
    activity: ActivityDep,
) -> ScoreResponse:
    records = _records([body], scorer, at=[("body",)])
    responses, _ = _score(
        records,
        scorer=scorer,
        online=online,
        store=store,
        observer=observer,
        explain="all",
        logs=logs,
        activity=activity,
    )
    return responses[0]


@router.post(
    "/score/batch",
    response_model=BatchScoreResponse,
    summary="Score up to FRAUD_API_MAX_BATCH transactions in one vectorized call",
)
def score_batch(
    body: JsonObject,
    scorer: ScorerDep,
    online: OnlineStateDep,
    store: ResultStoreDep,
    observer: ObserverDep,
    settings: SettingsDep,
    logs: LogsDep,
    activity: ActivityDep,
) -> BatchScoreResponse:
    transactions = body.get("transactions")
    extra = sorted(set(body) - {"transactions"})
    if not isinstance(transactions, list) or not transactions or extra:
        raise _unprocessable(
            ["body", extra[0]] if extra else ["body", "transactions"],
            f"unexpected field {extra[0]!r}" if extra else "a non-empty list of transactions is required",
            "extra_forbidden" if extra else "missing",
        )
    if len(transactions) > settings.api_max_batch:
        raise _unprocessable(
            ["body", "transactions"],
            f"at most {settings.api_max_batch} transactions per batch, got {len(transactions)}",
            "too_long",
        )
    records = _records(
        transactions, scorer, at=[("body", "transactions", i) for i in range(len(transactions))]
    )
    responses, warnings = _score(
        records,
        scorer=scorer,
        online=online,
        store=store,
        observer=observer,
        explain=settings.batch_explain,
        logs=logs,
        activity=activity,
    )
    for r in responses:
        r.warnings = []  # said once for the batch
    return BatchScoreResponse(results=responses, model_version=scorer.version, warnings=warnings)
