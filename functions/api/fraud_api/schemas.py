"""Response models of the HTTP API (their JSON schema is the OpenAPI contract). Request bodies
of `/v1/score*` are the data-shape plug-ins' models (`fraud_core.shapes`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraud_core.shapes.kaggle import PredictRequest

__all__ = ["PredictRequest"]


class PredictResponse(BaseModel):
    fraud_score: float = Field(description="Fraud probability in [0, 1].")
    decision: Literal["approve", "review", "decline"]
    model_version: str


class Reason(BaseModel):
    feature: str
    value: float
    contribution: float = Field(description="Score drop when this feature is reset to its training median.")


class ScoreResponse(BaseModel):
    transaction_id: str
    card_id: str | None
    fraud_score: float
    decision: Literal["approve", "review", "decline"]
    reasons: list[Reason]
    model_version: str
    online_features: dict[str, float] | None = Field(
        default=None,
        description="The feature vector scored, for a data shape whose features come from online state "
        "(card and terminal windows).",
    )
    card_counters: dict[str, float] | None = Field(
        default=None,
        description="The stream function's running counters of the card (tx_count, amount_sum): context "
        "for an analyst, not model input. Null without a card id, for an unknown card, or when the store "
        "is unreachable (then `warnings` says so).",
    )
    degraded: bool = Field(
        default=False,
        description="True only when the score itself was computed without some of its inputs.",
    )
    warnings: list[str] = Field(
        default_factory=list, description="Parts of the answer that are missing, and why."
    )


class BatchScoreResponse(BaseModel):
    results: list[ScoreResponse]
    model_version: str
    degraded: bool = False
    warnings: list[str] = Field(default_factory=list)


class StoredResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    transaction_id: str
    fraud_score: float
    decision: str


class ModelSummary(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    name: str
    version: str
    model_type: str
    features: list[str]
    thresholds: dict[str, Any]
    metrics: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    model: dict[str, Any]
    store: dict[str, Any]
