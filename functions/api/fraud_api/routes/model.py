"""`GET /v1/model`: what is serving."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fraud_api.deps import ScorerDep
from fraud_api.schemas import ModelSummary

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelSummary, summary="Summary of the current model's manifest")
async def model(scorer: ScorerDep) -> dict[str, Any]:
    return scorer.manifest.summary()
