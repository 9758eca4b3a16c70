"""The one definition of the model's features, shared by training (pandas columns) and serving.

Training passes whole columns from a DataFrame, serving passes columns parsed from JSON
transactions; both go through :func:`build_feature_matrix`, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

PCA_FIELDS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
"""The anonymised PCA components of the Kaggle file."""

RAW_FIELDS: tuple[str, ...] = ("Time", "Amount", *PCA_FIELDS)
"""Fields of one transaction in the Kaggle raw schema (``Class`` is the label, never an input)."""

PRESCALED_FIELDS: tuple[str, ...] = (*PCA_FIELDS, "scaled_amount", "scaled_time")
"""Fields of the classic pre-scaled ``/predict`` payload."""

LABEL_FIELD = "Class"
SECONDS_PER_DAY = 86_400.0

FeatureMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FeatureDefinition:
    """A named model input and the raw fields it is computed from."""

    name: str
    sources: tuple[str, ...]
    description: str


# Raw `Time` (seconds since the first transaction of the file) is deliberately not a feature:
# under a time-ordered split every test value lies beyond the training range, so a model can
# only learn "late = different". The time of day is stable and carries the day/night signal.
FEATURES: tuple[FeatureDefinition, ...] = (
    *(FeatureDefinition(v, (v,), "anonymised PCA component") for v in PCA_FIELDS),
    FeatureDefinition("Amount", ("Amount",), "transaction amount"),
    FeatureDefinition("hour_of_day", ("Time",), "hour of day derived from Time, in [0, 24)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


class Columns(Protocol):
    """Anything indexable by field name: a dict of arrays or lists, a pandas DataFrame."""

    def __getitem__(self, key: str, /) -> Any: ...


def build_feature_matrix(columns: Columns) -> FeatureMatrix:
    """Features from raw columns: ``columns`` maps every name of :data:`RAW_FIELDS` to a 1-D
    array of equal length (a pandas DataFrame works as is). Training enters here."""
    raw = np.column_stack([np.asarray(columns[f], dtype=np.float64) for f in RAW_FIELDS])
    return features_from_raw(raw)


_PCA_SLICE = slice(RAW_FIELDS.index("V1"), RAW_FIELDS.index("V28") + 1)
_AMOUNT = RAW_FIELDS.index("Amount")
_TIME = RAW_FIELDS.index("Time")


def features_from_raw(raw: npt.NDArray[np.float64]) -> FeatureMatrix:
    """The ``(n, len(FEATURE_NAMES))`` float32 model input from an ``(n, len(RAW_FIELDS))`` matrix.

    The single implementation of :data:`FEATURES`: serving calls it on parsed JSON, training
    through :func:`build_feature_matrix`. float32 is the model's input type in both sklearn and
    ONNX, so the two runtimes compare identical numbers.
    """
    out = np.empty((raw.shape[0], len(FEATURE_NAMES)), dtype=np.float32)
    out[:, : len(PCA_FIELDS)] = raw[:, _PCA_SLICE]
    out[:, len(PCA_FIELDS)] = raw[:, _AMOUNT]
    out[:, len(PCA_FIELDS) + 1] = np.mod(raw[:, _TIME], SECONDS_PER_DAY) / 3600.0
    return out


def missing_features(model_features: list[str] | tuple[str, ...]) -> list[str]:
    """Names a model expects that this definition cannot build (empty when compatible)."""
    order_ok = tuple(model_features) == FEATURE_NAMES
    if order_ok:
        return []
    unknown = [f for f in model_features if f not in FEATURE_NAMES]
    return unknown or ["<feature order differs from fraud_core.features.FEATURE_NAMES>"]
