"""The Kaggle PCA schema's fields, their one constraint table, and the HTTP request models built from it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from fraud_core.constraints import Bounds, Identifier, Moment

PCA_FIELDS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
"""The anonymised PCA components of the Kaggle file."""

RAW_FIELDS: tuple[str, ...] = ("Time", "Amount", *PCA_FIELDS)
"""Fields of one transaction in the Kaggle raw schema (``Class`` is the label, never an input)."""

PRESCALED_FIELDS: tuple[str, ...] = (*PCA_FIELDS, "scaled_amount", "scaled_time")
"""Fields of the classic pre-scaled ``/predict`` payload."""

ID_FIELDS: tuple[str, ...] = ("transaction_id", "card_id")
LABEL_FIELD = "Class"
TIMESTAMP_FIELD = "timestamp"
"""ISO-8601 alternative to ``Time`` (converted to epoch seconds)."""

# Real PCA components stay within ±200; anything beyond ±10,000 is a client bug, not a transaction.
_COMPONENT = Bounds(-10_000, 10_000)
NUMBERS: dict[str, Bounds] = {
    **dict.fromkeys(PCA_FIELDS, _COMPONENT),
    "Time": Bounds(0, 1e11),
    "Amount": Bounds(0, 10_000_000),
    "scaled_amount": Bounds(-10_000, 100_000),
    "scaled_time": Bounds(-100, 100_000),
}
"""THE constraint table of this shape: the API's models below and the stream's fast path both read it."""

EXAMPLE_V = {
    "V1": -1.3598071336738, "V2": -0.0727811733098497, "V3": 2.53634673796914, "V4": 1.37815522427443,
    "V5": -0.338320769942518, "V6": 0.462387777762292, "V7": 0.239598554061257, "V8": 0.0986979012610507,
    "V9": 0.363786969611213, "V10": 0.0907941719789316, "V11": -0.551599533260813, "V12": -0.617800855762348,
    "V13": -0.991389847235408, "V14": -0.311169353699879, "V15": 1.46817697209427, "V16": -0.470400525259478,
    "V17": 0.207971241929242, "V18": 0.0257905801985591, "V19": 0.403992960255733, "V20": 0.251412098239705,
    "V21": -0.018306777944153, "V22": 0.277837575558899, "V23": -0.110473910188767, "V24": 0.0669280749146731,
    "V25": 0.128539358273528, "V26": -0.189114843888824, "V27": 0.133558376740387, "V28": -0.0210530534538215,
}  # fmt: skip


def _required(*names: str) -> dict[str, Any]:
    return {n: (NUMBERS[n].annotation(), ...) for n in names}


class _ScoreBase(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"transaction_id": "t_0", "card_id": "c_42", "Time": 0.0, "Amount": 149.62, **EXAMPLE_V}
            ]
        },
    )

    @model_validator(mode="after")
    def _one_time(self) -> _ScoreBase:
        if (getattr(self, "Time", None) is None) == (getattr(self, "timestamp", None) is None):
            raise ValueError("give exactly one of `Time` (seconds) or `timestamp` (ISO-8601)")
        return self


ScoreRequest: type[BaseModel] = create_model(
    "ScoreRequest",
    __base__=_ScoreBase,
    __doc__="A raw transaction in the Kaggle schema; give `Time` (seconds) or an ISO-8601 `timestamp`.",
    transaction_id=(Identifier | None, Field(default=None, description="Generated when absent.")),
    card_id=(Identifier | None, None),
    Time=(
        NUMBERS["Time"].annotation(optional=True),
        Field(default=None, description="Seconds (Kaggle: since the first transaction of the file)."),
    ),
    timestamp=(Moment | None, Field(default=None, description="ISO-8601 time, instead of `Time`.")),
    **_required("Amount", *PCA_FIELDS),
)

PredictRequest: type[BaseModel] = create_model(
    "PredictRequest",
    __config__=ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**EXAMPLE_V, "scaled_amount": 1.7833, "scaled_time": -0.9949}]},
    ),
    __doc__="The classic payload: PCA components plus Amount and Time robust-scaled with the model's scaler.",
    **_required(*PRESCALED_FIELDS),
)
