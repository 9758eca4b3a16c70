"""`POST /predict`: the classic contract, unchanged."""

from __future__ import annotations

from fastapi import APIRouter

from fraud_api.deps import ObserverDep, ScorerDep
from fraud_api.schemas import PredictRequest, PredictResponse

router = APIRouter(tags=["scoring"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Score the classic pre-scaled payload (V1..V28, scaled_amount, scaled_time)",
)
async def predict(body: PredictRequest, scorer: ScorerDep, observer: ObserverDep) -> PredictResponse:
    result = scorer.score_one(body.model_dump(), explain="none")
    observer.decisions([result.decision])
    return PredictResponse(
        fraud_score=result.fraud_score, decision=result.decision, model_version=result.model_version
    )
