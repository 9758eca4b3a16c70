"""Request and response models of the HTTP API (their JSON schema is the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, Strict, create_model, model_validator

from fraud_core.features import PCA_FIELDS

# Real PCA components stay within ±200; anything beyond ±10,000 is a client bug, not a transaction.
# Strict: "1.5" or true are client bugs, refused rather than coerced (ints are still fine).
Number = Annotated[FiniteFloat, Strict()]
Component = Annotated[Number, Field(ge=-10_000, le=10_000)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/+=-]+$")]

_STRICT = ConfigDict(extra="forbid")

_EXAMPLE_V = {
    "V1": -1.3598071336738, "V2": -0.0727811733098497, "V3": 2.53634673796914, "V4": 1.37815522427443,
    "V5": -0.338320769942518, "V6": 0.462387777762292, "V7": 0.239598554061257, "V8": 0.0986979012610507,
    "V9": 0.363786969611213, "V10": 0.0907941719789316, "V11": -0.551599533260813, "V12": -0.617800855762348,
    "V13": -0.991389847235408, "V14": -0.311169353699879, "V15": 1.46817697209427, "V16": -0.470400525259478,
    "V17": 0.207971241929242, "V18": 0.0257905801985591, "V19": 0.403992960255733, "V20": 0.251412098239705,
    "V21": -0.018306777944153, "V22": 0.277837575558899, "V23": -0.110473910188767, "V24": 0.0669280749146731,
    "V25": 0.128539358273528, "V26": -0.189114843888824, "V27": 0.133558376740387, "V28": -0.0210530534538215,
}  # fmt: skip

_Components: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_Components", __config__=_STRICT, **{v: (Component, ...) for v in PCA_FIELDS}
)


class PredictRequest(_Components):  # type: ignore[misc,valid-type]
    """The classic payload: PCA components plus Amount and Time robust-scaled with the model's scaler."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**_EXAMPLE_V, "scaled_amount": 1.7833, "scaled_time": -0.9949}]},
    )
    scaled_amount: Annotated[Number, Field(ge=-10_000, le=100_000)]
    scaled_time: Annotated[Number, Field(ge=-100, le=100_000)]


class PredictResponse(BaseModel):
    fraud_score: float = Field(description="Fraud probability in [0, 1].")
    decision: Literal["approve", "review", "decline"]
    model_version: str


class ScoreRequest(_Components):  # type: ignore[misc,valid-type]
    """A raw transaction in the Kaggle schema; give `Time` (seconds) or an ISO-8601 `timestamp`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"transaction_id": "t_0", "card_id": "c_42", "Time": 0.0, "Amount": 149.62, **_EXAMPLE_V}
            ]
        },
    )
    transaction_id: Identifier | None = Field(default=None, description="Generated when absent.")
    card_id: Identifier | None = None
    Time: Annotated[Number, Field(ge=0, le=1e11)] | None = Field(
        default=None, description="Seconds (Kaggle: since the first transaction of the file)."
    )
    timestamp: datetime | None = Field(default=None, description="ISO-8601 time, instead of `Time`.")
    Amount: Annotated[Number, Field(ge=0, le=10_000_000)]

    @model_validator(mode="after")
    def _one_time(self) -> ScoreRequest:
        if (self.Time is None) == (self.timestamp is None):
            raise ValueError("give exactly one of `Time` (seconds) or `timestamp` (ISO-8601)")
        return self


class EntityScoreRequest(BaseModel):
    """A card transaction for a simulated-schema model: its card and terminal features are read
    from the online store (the same windows the stream function maintains)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "812",
                    "tx_datetime": "2018-08-02T10:15:00Z",
                    "customer_id": "4127",
                    "terminal_id": "3107",
                    "amount": 57.16,
                }
            ]
        },
    )
    transaction_id: Identifier | None = Field(default=None, description="Generated when absent.")
    tx_datetime: datetime | Annotated[int, Field(ge=0, le=10**11, strict=True)] = Field(
        description="ISO-8601 time or epoch seconds."
    )
    customer_id: Identifier
    terminal_id: Identifier
    amount: Annotated[Number, Field(ge=0, le=10_000_000)]


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
        default=None, description="Online features of the card read from the store, when a card id is given."
    )
    degraded: bool = Field(default=False, description="True when the online store was unreachable.")


class BatchScoreRequest(BaseModel):
    model_config = _STRICT
    transactions: list[ScoreRequest] = Field(min_length=1, max_length=10_000)


class BatchScoreResponse(BaseModel):
    results: list[ScoreResponse]
    model_version: str
    degraded: bool = False


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
