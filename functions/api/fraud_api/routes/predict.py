"""`POST /predict`: the classic contract, unchanged (a Kaggle-shape model's pre-scaled payload)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from fraud_api.deps import ObserverDep, ScorerDep
from fraud_api.schemas import PredictRequest, PredictResponse
from fraud_core.shapes.kaggle import KAGGLE

router = APIRouter(tags=["scoring"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Score the classic pre-scaled payload (V1..V28, scaled_amount, scaled_time)",
    responses={409: {"description": "The current model is of another data shape: use POST /v1/score"}},
)
async def predict(body: PredictRequest, scorer: ScorerDep, observer: ObserverDep) -> PredictResponse:  # type: ignore[valid-type]
    if scorer.shape is not KAGGLE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"the current model ({scorer.shape.name} schema) does not score the classic payload: "
            "send its transactions to POST /v1/score",
        )
    result = scorer.score_one(body.model_dump(), explain="none")  # type: ignore[attr-defined]
    observer.decisions([result.decision])
    return PredictResponse(
        fraud_score=result.fraud_score, decision=result.decision, model_version=result.model_version
    )
